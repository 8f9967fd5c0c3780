// tests/integration/server_process.h: a `kvault serve` child process on a free port, for
// end-to-end tests over real HTTP.
#pragma once

#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "kvault/base/mutex.h"

namespace kvault::testing {

class ServerProcess {
 public:
  // Starts `kvault serve --port 0 <args>` and waits until it reports its port. ok() is false
  // if it did not start within 30 s (log() says why).
  explicit ServerProcess(const std::vector<std::string>& args,
                         const std::vector<std::string>& extra_env = {});
  ~ServerProcess();  // SIGKILLs the process if still running

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const;
  // Sends SIGTERM and returns the exit status (-1 if killed by a signal or timed out).
  int Terminate(int timeout_seconds = 30);

 private:
  std::string state_dir_;  // private --cache-dir / --data-dir, removed at the end
  pid_t pid_ = -1;
  int port_ = 0;
  int stderr_fd_ = -1;
  std::thread reader_;
  mutable Mutex mu_;
  std::string log_ KV_GUARDED_BY(mu_);
};

}  // namespace kvault::testing
