#include "kvault/testing/redis_server.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
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

constexpr const char* kBinary = "/usr/bin/redis-server";

bool Answers(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  if (ok) {
    const char ping[] = "PING\r\n";
    char reply[16] = {};
    ok = ::write(fd, ping, sizeof(ping) - 1) == sizeof(ping) - 1 && ::read(fd, reply, 7) > 0 &&
         std::string(reply).starts_with("+PONG");
  }
  ::close(fd);
  return ok;
}

}  // namespace

bool RedisServer::Available() { return ::access(kBinary, X_OK) == 0; }

RedisServer::RedisServer() {
  port_ = FreeLoopbackPort();
  dir_ = (std::filesystem::temp_directory_path() /
          ("kvault_redis_" + std::to_string(::getpid()) + "_" + std::to_string(port_)))
             .string();
  std::filesystem::create_directories(dir_);
}

RedisServer::~RedisServer() {
  Stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

bool RedisServer::Start() {
  if (pid_ > 0) return true;
  std::vector<std::string> args = {
      kBinary,  "--port",    std::to_string(port_), "--bind", "127.0.0.1",
      "--save", "",          "--appendonly",        "no",     "--dir",
      dir_,     "--logfile", dir_ + "/redis.log"};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  if (::posix_spawn(&pid_, kBinary, nullptr, nullptr, argv.data(), environ) != 0) {
    pid_ = -1;
    return false;
  }
  for (int i = 0; i < 200; ++i) {
    if (Answers(port_)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void RedisServer::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace kvault::testing
