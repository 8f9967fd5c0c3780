// cli/bench/child_process.h: a server started by a benchmark (kvault serve, llama-server):
// spawned with its output in a log file, waited for until GET /health answers 200, stopped
// with SIGTERM.
//
// Mechanism only: drivers start servers through BenchServer (bench_harness.h), which picks
// the port and the argv.
//
// Thread-safety: one owner; port() may be read from any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include "kvault/base/result.h"

namespace kvault::cli {

class ChildServer {
 public:
  // Starts argv (argv[0] a path) and waits up to `timeout_seconds` for http://host:port/health.
  static Result<std::unique_ptr<ChildServer>> Start(const std::vector<std::string>& argv, int port,
                                                    const std::string& log_path,
                                                    int timeout_seconds = 120);
  ~ChildServer();  // Stop()
  ChildServer(const ChildServer&) = delete;
  ChildServer& operator=(const ChildServer&) = delete;

  // Starts argv without waiting for it (crash trials kill servers while they start).
  static Result<std::unique_ptr<ChildServer>> Spawn(const std::vector<std::string>& argv, int port,
                                                    const std::string& log_path);

  int port() const { return port_; }
  // The process id while it runs (benchmarks read its /proc/<pid>/status); -1 once stopped.
  pid_t pid() const { return pid_; }
  // SIGTERM, then SIGKILL after 30 s.
  void Stop();
  // SIGKILL at once (crash trials), and reaps it.
  void Kill();

 private:
  ChildServer(pid_t pid, int port) : pid_(pid), port_(port) {}
  pid_t pid_;
  int port_;
};

// A TCP port nothing listens on right now (the kernel's choice).
Result<int> FreePort();
// The path of the running kvault binary.
std::string SelfPath();

}  // namespace kvault::cli
