#include "kvault/store/record_log.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <unistd.h>

namespace kvault::store {
namespace {

class RecordLogTest : public ::testing::Test {
 protected:
  RecordLogTest()
      : path_((std::filesystem::temp_directory_path() /
               ("kvault_record_log_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                  .string()) {
    std::filesystem::remove(path_);
  }
  ~RecordLogTest() override { std::filesystem::remove(path_); }

  RecordLog::Opened Open() {
    Result<RecordLog::Opened> opened = RecordLog::Open(path_);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    return std::move(opened).value();
  }

  std::string path_;
};

TEST_F(RecordLogTest, AppendedRecordsComeBackInOrder) {
  {
    RecordLog::Opened opened = Open();
    EXPECT_TRUE(opened.records.empty());
    ASSERT_TRUE(opened.log->Append("first", true).ok());
    ASSERT_TRUE(opened.log->Append(std::string(100000, 'x'), false).ok());
    ASSERT_TRUE(opened.log->Append("", true).ok());
  }
  RecordLog::Opened reopened = Open();
  ASSERT_EQ(reopened.records.size(), 3u);
  EXPECT_EQ(reopened.records[0], "first");
  EXPECT_EQ(reopened.records[1].size(), 100000u);
  EXPECT_EQ(reopened.records[2], "");
  EXPECT_EQ(reopened.dropped_bytes, 0u);
}

TEST_F(RecordLogTest, ATornTailIsCutOffAndAppendsContinueAfterTheGoodRecords) {
  {
    RecordLog::Opened opened = Open();
    ASSERT_TRUE(opened.log->Append("kept", true).ok());
    ASSERT_TRUE(opened.log->Append("torn away", true).ok());
  }
  std::filesystem::resize_file(path_, std::filesystem::file_size(path_) - 3);
  {
    RecordLog::Opened opened = Open();
    ASSERT_EQ(opened.records.size(), 1u);
    EXPECT_GT(opened.dropped_bytes, 0u);
    ASSERT_TRUE(opened.log->Append("after", true).ok());
  }
  RecordLog::Opened reopened = Open();
  ASSERT_EQ(reopened.records.size(), 2u);
  EXPECT_EQ(reopened.records[1], "after");
}

TEST_F(RecordLogTest, AFlippedByteEndsTheLogThere) {
  {
    RecordLog::Opened opened = Open();
    for (const char* r : {"one", "two", "three"}) ASSERT_TRUE(opened.log->Append(r, false).ok());
  }
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8 + 12 + 3 + 12 + 1);  // inside "two"
    f.put('X');
  }
  EXPECT_EQ(Open().records.size(), 1u);
}

TEST_F(RecordLogTest, AnotherFileIsRefusedAndRewriteReplacesAtomically) {
  {
    std::ofstream f(path_);
    f << "not a log at all";
  }
  EXPECT_EQ(RecordLog::Open(path_).status().code(), StatusCode::kCorruption);
  const std::vector<std::string> records = {"a", "bb"};
  ASSERT_TRUE(RecordLog::Rewrite(path_, records).ok());
  EXPECT_EQ(Open().records, records);
}

}  // namespace
}  // namespace kvault::store
