// server/http_front.h: the server's public listener. kvault reads every connection first:
// each request head is checked under limits and a deadline (http_head.h), each body is
// counted against the size limit and a deadline; what is malformed, too big or too slow gets
// one proper status (400, 408, 413, 414, 431) and the connection closes; well-formed
// requests go on, byte for byte, to httplib listening on a private (abstract) Unix socket,
// and its responses come back unchanged.
//
// Why a front and not httplib's own listener: httplib closes the connection without any
// response for a request line over 32 KB and for LF-only heads, answers 400 where 413 or
// 431 is due, may answer twice on one connection (its keep-alive loop reads the rest of an
// oversized header as a new request), and has only a per-recv timeout, so a client sending
// one byte every 4 s holds a connection forever. Its routing, bodies and streaming stay.
//
// Connections: one thread each while open (server/connection_threads.h), up to
// `max_connections`; beyond it a new connection gets 503 at once. A connection that sends
// nothing within `idle_timeout_s` of opening is closed; between requests, httplib's own
// keep-alive limits apply (it closes its side, and the front closes the client's). When the
// client goes away, httplib sees its side close at once (a stream is cancelled as before).
//
// Thread-safety: Stop() may be called from any thread; Serve() from one.
#pragma once

#include <memory>
#include <string>

#include "kvault/base/result.h"
#include "kvault/server/http_head.h"

namespace kvault::server {

struct FrontLimits {
  HeadLimits head;
  double head_timeout_s = 10;  // a head must arrive within this of its first byte: else 408
  double body_timeout_s = 60;  // a body must arrive within this of its head's end: else 408
  double idle_timeout_s = 5;   // a new connection that sends nothing is closed
  // After an error: what the client still sends is read (closing with unread bytes would
  // reset the connection and lose the response) until it stops for this long.
  double linger_s = 5;
  size_t max_connections = 1024;
};

class HttpFront {
 public:
  // Listens on host:port (0: a free port). Unavailable if the address is taken.
  static Result<std::unique_ptr<HttpFront>> Bind(const std::string& host, int port,
                                                 const FrontLimits& limits);
  ~HttpFront();
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  int port() const;
  // The address httplib must listen on: "@kvault-http-<pid>-<n>", an abstract Unix socket
  // (no file to leave behind after kill -9), in httplib's notation.
  const std::string& backend_address() const;

  // Accepts connections and relays them to the backend until Stop(); returns once every
  // connection has ended.
  void Serve();
  // Stops accepting. Connections without a request in flight close at once; the others end
  // when the backend closes its side (httplib's stop()).
  void Stop();

 private:
  struct Impl;
  explicit HttpFront(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::server
