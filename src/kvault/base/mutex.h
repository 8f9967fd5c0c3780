// base/mutex.h: a std::mutex the thread-safety analysis understands, its scoped lock, and a
// condition variable that waits on it. libstdc++'s own types carry no annotations.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "kvault/base/thread_annotations.h"

namespace kvault {

class KV_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() KV_ACQUIRE() { mu_.lock(); }
  void Unlock() KV_RELEASE() { mu_.unlock(); }
  bool TryLock() KV_TRY_ACQUIRE(true) { return mu_.try_lock(); }

  // BasicLockable, for std::condition_variable_any.
  void lock() KV_ACQUIRE() { mu_.lock(); }
  void unlock() KV_RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class KV_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) KV_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  // Takes over a mutex the caller already holds.
  MutexLock(Mutex* mu, std::adopt_lock_t) KV_REQUIRES(mu) : mu_(mu) {}
  ~MutexLock() KV_RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// Waits release and re-acquire `mu`, which the caller must hold.
class CondVar {
 public:
  void Wait(Mutex* mu) KV_REQUIRES(mu) { cv_.wait(*mu); }
  // Returns false on timeout.
  bool WaitFor(Mutex* mu, std::chrono::milliseconds timeout) KV_REQUIRES(mu) {
    return cv_.wait_for(*mu, timeout) == std::cv_status::no_timeout;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable_any cv_;
};

}  // namespace kvault
