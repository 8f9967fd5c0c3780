// server/http_server.h: the kvault HTTP server: loads the model, creates the llama context and
// the continuous-batching scheduler, the conversation manager, metrics and auth, and serves
// the routes (routes.h) with cpp-httplib.
//
// Shutdown (Stop, e.g. on SIGINT/SIGTERM): new requests are refused with 503, running ones
// get `shutdown_grace_seconds` to finish, the rest are cancelled, then the listener closes.
//
// Thread-safety: Stop() may be called from any thread; the rest from the owning thread.
#pragma once

#include <memory>

#include "kvault/base/result.h"
#include "kvault/server/server_config.h"

namespace kvault::server {

class Server {
 public:
  static Result<std::unique_ptr<Server>> Create(const ServerConfig& config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket. Unavailable if the address is taken.
  Status Bind();
  // Serves until Stop(). REQUIRES: Bind() succeeded.
  Status Serve();
  void Stop();
  int port() const;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::server
