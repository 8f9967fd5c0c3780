#include "kvault/base/storage_health.h"

#include <chrono>

#include "kvault/base/log.h"

namespace kvault {

std::string_view StorageAreaName(StorageArea area) {
  switch (area) {
    case StorageArea::kJournal: return "journal";
    case StorageArea::kBlocks: return "blocks";
    case StorageArea::kSessions: return "sessions";
    case StorageArea::kIndex: return "index";
    case StorageArea::kKnowledge: return "knowledge";
  }
  return "";
}

bool IsStorageFailure(const Status& status) {
  return status.detail() == ErrorDetail::kInsufficientStorage ||
         status.code() == StatusCode::kIOError;
}

Status StorageHealth::Note(StorageArea area, Status status) {
  const bool failed = !status.ok() && IsStorageFailure(status);
  if (!status.ok() && !failed) return status;
  MutexLock lock(&mu_);
  StorageAreaState& state = areas_[static_cast<size_t>(area)];
  if (failed) {
    ++state.failures;
    if (!state.failing) {
      state.failing = true;
      state.error = status.message();
      state.failing_since =
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      KV_LOG(kError) << "storage: " << StorageAreaName(area) << " writes fail (" << status.message()
                     << "); serving goes on from RAM, and changes that "
                     << "must be stored first are refused with 507 until writes succeed again";
    }
  } else if (state.failing) {
    state.failing = false;
    KV_LOG(kInfo) << "storage: " << StorageAreaName(area) << " writes succeed again (after "
                  << state.failures << " failed)";
  }
  return status;
}

std::array<StorageAreaState, kStorageAreas> StorageHealth::Snapshot() const {
  MutexLock lock(&mu_);
  return areas_;
}

bool StorageHealth::degraded() const {
  MutexLock lock(&mu_);
  for (const StorageAreaState& state : areas_) {
    if (state.failing) return true;
  }
  return false;
}

}  // namespace kvault
