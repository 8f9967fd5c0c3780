#include "kvault/server/connection_threads.h"

#include <system_error>
#include <thread>

namespace kvault::server {

bool ConnectionThreads::enqueue(std::function<void()> fn) {
  {
    MutexLock lock(&mu_);
    if (shut_down_ || running_ >= max_threads_) return false;
    ++running_;
  }
  try {
    // Detached: shutdown() waits on the count, not on the thread objects.
    std::thread([this, fn = std::move(fn)] {
      fn();
      MutexLock lock(&mu_);
      --running_;
      done_.SignalAll();
    }).detach();
  } catch (const std::system_error&) {  // no more threads from the system: refuse this one
    MutexLock lock(&mu_);
    --running_;
    return false;
  }
  return true;
}

void ConnectionThreads::shutdown() {
  MutexLock lock(&mu_);
  shut_down_ = true;
  while (running_ > 0) done_.Wait(&mu_);
}

}  // namespace kvault::server
