// conversation/admission.h: how many requests run and wait. `threads` requests generate at
// once; up to `queue` more wait for a thread; a request beyond threads + queue is refused at
// once (the server answers 503) rather than piling up, and one that waits longer than the
// queue timeout gives up (503 too). Closing it (shutdown) refuses new requests and wakes the
// waiting ones with Unavailable.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"

namespace kvault::conversation {

struct AdmissionStats {
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t max_running = 0;
  int64_t max_waiting = 0;
  int64_t rejected = 0;   // refused because threads and queue were full
  int64_t timed_out = 0;  // gave up after waiting the queue timeout
};

class Admission {
 public:
  Admission(int max_running, int max_waiting, std::chrono::milliseconds queue_timeout);

  // A place in the system: first in the queue, then (after Run()) on a thread. Releasing the
  // ticket frees whichever it holds.
  class Ticket {
   public:
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    // Waits for a thread until the deadline: ResourceExhausted after it, Unavailable if
    // admission closes while waiting.
    Status Run();
    // When the request's queue time ends: what else it waits for before it runs (another
    // replica's lease on its conversation) waits until then at most.
    std::chrono::steady_clock::time_point deadline() const { return deadline_; }

   private:
    friend class Admission;
    Ticket(Admission* admission, std::chrono::steady_clock::time_point deadline)
        : admission_(admission), deadline_(deadline) {}
    Admission* admission_;
    const std::chrono::steady_clock::time_point deadline_;
    bool running_ = false;
  };

  // A queued ticket, or ResourceExhausted when threads and queue are all taken.
  Result<std::unique_ptr<Ticket>> Enter();
  void Close();
  AdmissionStats stats() const;

 private:
  mutable Mutex mu_;
  CondVar thread_freed_;
  const int64_t max_running_;
  const int64_t max_waiting_;
  const std::chrono::milliseconds queue_timeout_;
  int64_t running_ KV_GUARDED_BY(mu_) = 0;
  int64_t waiting_ KV_GUARDED_BY(mu_) = 0;
  int64_t rejected_ KV_GUARDED_BY(mu_) = 0;
  int64_t timed_out_ KV_GUARDED_BY(mu_) = 0;
  bool closed_ KV_GUARDED_BY(mu_) = false;
};

}  // namespace kvault::conversation
