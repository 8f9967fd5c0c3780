// server/connection_threads.h: the HTTP server's threads: one per open connection, created
// when it is accepted and ended when it closes, up to a cap. httplib's own pool queues
// connections behind busy threads, so ~80 idle or slowly sending clients made every route
// wait (/health included); and under a burst it refuses connections while it still has
// idle threads. Here a connection is either served at once or, beyond the cap, closed at
// once (httplib closes it when enqueue refuses).
//
// Thread-safety: enqueue and shutdown may be called from any thread (httplib calls both from
// its accept loop).
#pragma once

#include <cstddef>
#include <functional>

#include <httplib.h>

#include "kvault/base/mutex.h"

namespace kvault::server {

class ConnectionThreads final : public httplib::TaskQueue {
 public:
  explicit ConnectionThreads(size_t max_threads) : max_threads_(max_threads) {}
  ~ConnectionThreads() override { shutdown(); }

  // Runs `fn` (one connection's whole life) on a new thread; false at the cap.
  bool enqueue(std::function<void()> fn) override;
  // Refuses new connections and waits for the running ones to end.
  void shutdown() override;

 private:
  const size_t max_threads_;
  Mutex mu_;
  CondVar done_;
  size_t running_ KV_GUARDED_BY(mu_) = 0;
  bool shut_down_ KV_GUARDED_BY(mu_) = false;
};

}  // namespace kvault::server
