// testing/redis_server.h: a real redis-server child on a free 127.0.0.1 port, with its own
// folder and no persistence, for the tests and benchmarks of the remote tier. Stop() and
// Start() again model an outage and a restart (empty, as a Redis without persistence).
#pragma once

#include <string>

#include <sys/types.h>

namespace kvault::testing {

class RedisServer {
 public:
  // Whether redis-server is installed (tests skip, saying so, when it is not).
  static bool Available();
  RedisServer();
  ~RedisServer();  // stops it
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts it (again on the same port); false if it did not answer within 10 s.
  bool Start();
  // SIGKILL: an outage, or a crash.
  void Stop();
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
  std::string dir_;
};

}  // namespace kvault::testing
