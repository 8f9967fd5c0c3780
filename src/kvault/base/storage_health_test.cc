#include "kvault/base/storage_health.h"

#include <cerrno>

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(StorageHealthTest, AFullOrReadOnlyDiskIsAStorageFailure) {
  EXPECT_EQ(ErrnoError("write", ENOSPC).detail(), ErrorDetail::kInsufficientStorage);
  EXPECT_EQ(ErrnoError("write", EDQUOT).detail(), ErrorDetail::kInsufficientStorage);
  EXPECT_EQ(ErrnoError("open", EROFS).detail(), ErrorDetail::kInsufficientStorage);
  EXPECT_TRUE(IsStorageFailure(ErrnoError("write", ENOSPC)));
  EXPECT_TRUE(IsStorageFailure(ErrnoError("write", EIO)));
  EXPECT_FALSE(IsStorageFailure(InvalidArgumentError("bad turn")));
}

TEST(StorageHealthTest, AnAreaFailsUntilAWriteSucceedsAndCountsItsFailures) {
  StorageHealth health;
  EXPECT_FALSE(health.degraded());
  EXPECT_FALSE(health.Note(StorageArea::kJournal, ErrnoError("write a", ENOSPC)).ok());
  health.Note(StorageArea::kJournal, ErrnoError("write b", ENOSPC)).IgnoreError();
  EXPECT_TRUE(health.degraded());
  auto areas = health.Snapshot();
  const StorageAreaState& journal = areas[static_cast<size_t>(StorageArea::kJournal)];
  EXPECT_TRUE(journal.failing);
  EXPECT_EQ(journal.failures, 2);
  EXPECT_EQ(journal.error, "write a: No space left on device");  // the first error
  EXPECT_FALSE(areas[static_cast<size_t>(StorageArea::kIndex)].failing);
  // A request's own error says nothing about the disk.
  health.Note(StorageArea::kIndex, InvalidArgumentError("no")).IgnoreError();
  EXPECT_FALSE(health.Snapshot()[static_cast<size_t>(StorageArea::kIndex)].failing);
  EXPECT_TRUE(health.Note(StorageArea::kJournal, Status::Ok()).ok());
  EXPECT_FALSE(health.degraded());
  EXPECT_EQ(health.Snapshot()[static_cast<size_t>(StorageArea::kJournal)].failures, 2);
}

}  // namespace
}  // namespace kvault
