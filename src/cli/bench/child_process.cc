#include "cli/bench/child_process.h"

#include <chrono>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvault/base/status_macros.h"

extern char** environ;

namespace kvault::cli {

Result<int> FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    return UnavailableError("no free TCP port");
  }
  ::close(fd);
  return static_cast<int>(ntohs(address.sin_port));
}

std::string SelfPath() {
  char buffer[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "kvault";
}

Result<std::unique_ptr<ChildServer>> ChildServer::Spawn(const std::vector<std::string>& argv,
                                                        int port, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return UnavailableError("cannot start " + argv[0] + ": " + std::strerror(rc));
  return std::unique_ptr<ChildServer>(new ChildServer(pid, port));
}

Result<std::unique_ptr<ChildServer>> ChildServer::Start(const std::vector<std::string>& argv,
                                                        int port, const std::string& log_path,
                                                        int timeout_seconds) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<ChildServer> server, Spawn(argv, port, log_path));
  const pid_t pid = server->pid_;
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(std::chrono::seconds(1));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (httplib::Result health = client.Get("/health"); health && health->status == 200) {
      return server;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      server->pid_ = -1;
      return UnavailableError(argv[0] + " exited before serving; see " + log_path);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return UnavailableError(argv[0] + " did not become healthy; see " + log_path);
}

ChildServer::~ChildServer() { Stop(); }

void ChildServer::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void ChildServer::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

}  // namespace kvault::cli
