// base/storage_health.h: what kvault knows of its folders' health, per area (the journal, the
// disk block tier, sessions, the chunk index, the knowledge store). A write that fails marks
// its area failing and one that succeeds marks it well again; the change is logged once each
// way (not once per failed write), failures are counted, and /health says "degraded" while
// any area fails. Serving goes on: what is in RAM is served; a change that must be durable
// before it is acknowledged (a turn, a session, a fact) is refused with 507 and changes
// nothing (base/status.h: ErrorDetail::kInsufficientStorage).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvault/base/mutex.h"
#include "kvault/base/status.h"

namespace kvault {

enum class StorageArea : uint8_t { kJournal, kBlocks, kSessions, kIndex, kKnowledge };
inline constexpr size_t kStorageAreas = 5;

// "journal", "blocks", "sessions", "index", "knowledge".
std::string_view StorageAreaName(StorageArea area);

// True for an error that means "this folder cannot be written now": a full disk or quota, a
// read-only file system or folder, an I/O error.
bool IsStorageFailure(const Status& status);

struct StorageAreaState {
  bool failing = false;
  std::string error;         // the first error of the current failure
  double failing_since = 0;  // Unix seconds
  int64_t failures = 0;      // failed writes since start
};

class StorageHealth {
 public:
  // Records `status` of a write to `area`: OK marks it well; a storage failure marks it
  // failing (other errors are the request's, not the disk's, and are ignored). Returns
  // `status`, so a call site reads `return health.Note(area, DoWrite());`.
  Status Note(StorageArea area, Status status);
  std::array<StorageAreaState, kStorageAreas> Snapshot() const;
  bool degraded() const;

 private:
  mutable Mutex mu_;
  std::array<StorageAreaState, kStorageAreas> areas_ KV_GUARDED_BY(mu_);
};

}  // namespace kvault
