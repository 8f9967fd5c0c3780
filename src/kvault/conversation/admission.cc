#include "kvault/conversation/admission.h"

namespace kvault::conversation {

Admission::Admission(int max_running, int max_waiting, std::chrono::milliseconds queue_timeout)
    : max_running_(max_running), max_waiting_(max_waiting), queue_timeout_(queue_timeout) {}

Result<std::unique_ptr<Admission::Ticket>> Admission::Enter() {
  MutexLock lock(&mu_);
  if (closed_) {
    return UnavailableError("the server is shutting down").WithDetail(ErrorDetail::kShuttingDown);
  }
  if (waiting_ + running_ >= max_running_ + max_waiting_) {
    ++rejected_;
    return ResourceExhaustedError("all " + std::to_string(max_running_) +
                                  " conversation threads are busy and the queue of " +
                                  std::to_string(max_waiting_) + " is full; retry later")
        .WithDetail(ErrorDetail::kServerOverloaded);
  }
  ++waiting_;
  return std::unique_ptr<Ticket>(
      new Ticket(this, std::chrono::steady_clock::now() + queue_timeout_));
}

Status Admission::Ticket::Run() {
  Admission* a = admission_;
  MutexLock lock(&a->mu_);
  while (!a->closed_ && a->running_ >= a->max_running_) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline_) {
      ++a->timed_out_;
      return ResourceExhaustedError("waited " + std::to_string(a->queue_timeout_.count() / 1000) +
                                    " s for a conversation thread (--queue-timeout); retry later")
          .WithDetail(ErrorDetail::kServerOverloaded);
    }
    // Rounded up: a wait cut short by the rounding would give up before the deadline.
    a->thread_freed_.WaitFor(&a->mu_,
                             std::chrono::ceil<std::chrono::milliseconds>(deadline_ - now));
  }
  if (a->closed_) {
    return UnavailableError("the server is shutting down").WithDetail(ErrorDetail::kShuttingDown);
  }
  --a->waiting_;
  ++a->running_;
  running_ = true;
  return Status::Ok();
}

Admission::Ticket::~Ticket() {
  Admission* a = admission_;
  MutexLock lock(&a->mu_);
  if (running_) {
    --a->running_;
    a->thread_freed_.SignalAll();
  } else {
    --a->waiting_;
  }
}

void Admission::Close() {
  MutexLock lock(&mu_);
  closed_ = true;
  thread_freed_.SignalAll();
}

AdmissionStats Admission::stats() const {
  MutexLock lock(&mu_);
  return {running_, waiting_, max_running_, max_waiting_, rejected_, timed_out_};
}

}  // namespace kvault::conversation
