#include "kvault/base/file.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <unistd.h>

namespace kvault {
namespace {

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("kvault_file_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

TEST_F(FileTest, AtomicWriteThenRead) {
  ASSERT_TRUE(WriteFileAtomic(Path("a"), std::string_view("first")).ok());
  ASSERT_TRUE(WriteFileAtomic(Path("a"), std::string_view("second")).ok());
  Result<std::string> read = ReadFileToString(Path("a"));
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, "second");
  // No temporary file is left behind.
  int n_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    (void)entry;
    ++n_files;
  }
  EXPECT_EQ(n_files, 1);
}

TEST_F(FileTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadFileToString(Path("missing")).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(FileSize(Path("missing")).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(PathExists(Path("missing")));
}

TEST_F(FileTest, WriteIntoMissingDirectoryFailsCleanly) {
  Status status = WriteFileAtomic(Path("no/such/dir/file"), std::string_view("x"));
  EXPECT_EQ(status.code(), StatusCode::kIOError);
}

TEST_F(FileTest, CreateDirectoriesAndFreeSpace) {
  ASSERT_TRUE(CreateDirectories(Path("x/y/z")).ok());
  EXPECT_TRUE(PathExists(Path("x/y/z")));
  Result<uint64_t> free_bytes = FreeDiskBytes(Path("x"));
  ASSERT_TRUE(free_bytes.ok());
  EXPECT_GT(*free_bytes, 0u);
}

}  // namespace
}  // namespace kvault
