// kvault serve: the OpenAI-compatible HTTP server (server/http_server.h).
#include <csignal>
#include <thread>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/serve_options.h"
#include <pthread.h>

#include "kvault/base/log.h"
#include "kvault/server/http_server.h"

namespace kvault::cli {
namespace {

// SIGINT and SIGTERM are blocked in every thread and taken by one thread with sigwait, so the
// shutdown runs as ordinary code rather than in a signal handler.
class SignalWatcher {
 public:
  explicit SignalWatcher(server::Server* server) {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    thread_ = std::thread([this, server] {
      int signal = 0;
      sigwait(&signals_, &signal);
      if (!quitting_) {
        KV_LOG(kInfo) << "received " << (signal == SIGINT ? "SIGINT" : "SIGTERM")
                      << ": finishing running requests, then exiting";
        server->Stop();
      }
    });
  }
  ~SignalWatcher() {
    quitting_ = true;
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }
  static void BlockInThisThread() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);  // a client that disconnects must not kill the server
  }

 private:
  sigset_t signals_;
  std::atomic<bool> quitting_{false};
  std::thread thread_;
};

}  // namespace

int RunServe(int argc, char** argv) {
  ServeOptions options;
  if (auto exit_code = options.Parse(argc, argv)) return *exit_code;
  const server::ServerConfig& config = options.config();
  SetLogFormat(ParseLogFormat(config.log_format).value_or(LogFormat::kText));
  SetLogLevel(ParseLogLevel(config.log_level).value_or(LogLevel::kInfo));

  // Before any thread starts, so that all of them inherit the blocked signals.
  SignalWatcher::BlockInThisThread();
  Result<std::unique_ptr<server::Server>> server = server::Server::Create(config);
  if (!server.ok()) return ReportError(server.status());
  Status bound = (*server)->Bind();
  if (!bound.ok()) return ReportError(bound);
  Status served;
  {
    SignalWatcher watcher(server->get());
    served = (*server)->Serve();
  }
  if (!served.ok()) return ReportError(served);
  KV_LOG(kInfo) << "kvault stopped";
  return 0;
}

}  // namespace kvault::cli
