#include "kvault/testing/llama_server.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvault/testing/free_port.h"

extern char** environ;

namespace kvault::testing {
namespace {

// Whether GET /health answers 200 (llama-server answers 503 while it loads the model).
bool Healthy(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  if (ok) {
    const std::string request =
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char reply[64] = {};
    ok = ::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()) &&
         ::read(fd, reply, sizeof(reply) - 1) > 12 &&
         std::string(reply).starts_with("HTTP/1.1 200");
  }
  ::close(fd);
  return ok;
}

}  // namespace

std::string LlamaServer::BinaryPath() {
  const char* env = std::getenv("KVAULT_LLAMA_BIN_DIR");
  const std::string dir = env != nullptr ? std::string(env) : std::string(KVAULT_LLAMA_BIN_DIR);
  const std::string path = dir + "/llama-server";
  return !dir.empty() && ::access(path.c_str(), X_OK) == 0 ? path : "";
}

LlamaServer::LlamaServer(std::string model, std::vector<std::string> extra)
    : model_(std::move(model)), extra_(std::move(extra)) {
  port_ = FreeLoopbackPort();
  log_path_ =
      (std::filesystem::temp_directory_path() /
       ("kvault_llama_server_" + std::to_string(::getpid()) + "_" + std::to_string(port_) + ".log"))
          .string();
}

LlamaServer::~LlamaServer() {
  Stop();
  std::error_code ignored;
  std::filesystem::remove(log_path_, ignored);
}

bool LlamaServer::Start() {
  if (pid_ > 0) return true;
  const std::string binary = BinaryPath();
  if (binary.empty()) return false;
  std::vector<std::string> args = {
      binary,       "-m", model_, "--host", "127.0.0.1", "--port", std::to_string(port_),
      "--no-webui", "-t", "2"};
  args.insert(args.end(), extra_.begin(), extra_.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // With it, GET /slots shows each slot's last prompt as text: what the upstream received.
  std::string slots_debug = "LLAMA_SERVER_SLOTS_DEBUG=1";
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  env.push_back(slots_debug.data());
  env.push_back(nullptr);
  const int spawned =
      ::posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    pid_ = -1;
    return false;
  }
  for (int i = 0; i < 600; ++i) {
    if (Healthy(port_)) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: a bad flag, a taken port
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

void LlamaServer::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGCONT);
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void LlamaServer::Pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void LlamaServer::Resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

std::string LlamaServer::log() const {
  std::ifstream in(log_path_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace kvault::testing
