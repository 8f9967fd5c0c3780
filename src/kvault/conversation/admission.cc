#include "kvault/conversation/admission.h"

namespace kvault::conversation {

Admission::Admission(int max_running, int max_waiting)
    : max_running_(max_running), max_waiting_(max_waiting) {}

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
  return std::unique_ptr<Ticket>(new Ticket(this));
}

Status Admission::Ticket::Run() {
  Admission* a = admission_;
  MutexLock lock(&a->mu_);
  while (!a->closed_ && a->running_ >= a->max_running_) a->thread_freed_.Wait(&a->mu_);
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
  return {running_, waiting_, max_running_, max_waiting_, rejected_};
}

}  // namespace kvault::conversation
