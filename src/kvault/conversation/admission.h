// conversation/admission.h: how many requests run and wait. `threads` requests generate at
// once; up to `queue` more wait for a thread; a request beyond threads + queue is refused at
// once (the server answers 503) rather than piling up. Closing it (shutdown) refuses new
// requests and wakes the waiting ones with Unavailable.
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
  int64_t rejected = 0;  // refused because threads and queue were full
};

class Admission {
 public:
  Admission(int max_running, int max_waiting);

  // A place in the system: first in the queue, then (after Run()) on a thread. Releasing the
  // ticket frees whichever it holds.
  class Ticket {
   public:
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    // Waits for a thread. Unavailable if admission closes while waiting.
    Status Run();

   private:
    friend class Admission;
    explicit Ticket(Admission* admission) : admission_(admission) {}
    Admission* admission_;
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
  int64_t running_ KV_GUARDED_BY(mu_) = 0;
  int64_t waiting_ KV_GUARDED_BY(mu_) = 0;
  int64_t rejected_ KV_GUARDED_BY(mu_) = 0;
  bool closed_ KV_GUARDED_BY(mu_) = false;
};

}  // namespace kvault::conversation
