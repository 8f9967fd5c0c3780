// base/file.h: whole-file reads and crash-safe writes. A write goes to "<path>.tmp.<pid>",
// is fsynced, renamed over <path>, and the directory is fsynced, so after a crash <path> holds
// either the old or the new bytes, never a mix.
//
// Thread-safety: functions are safe to call concurrently on different paths.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/coding.h"
#include "kvault/base/result.h"

namespace kvault {

Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> bytes);
Status WriteFileAtomic(const std::string& path, std::string_view bytes);
Result<std::string> ReadFileToString(const std::string& path);
Result<std::vector<uint8_t>> ReadFileToBytes(const std::string& path);

// Streams a large file to "<path>.tmp.<pid>" and publishes it with Commit() (fsync, rename,
// directory fsync). Dropped without Commit(), it deletes the temporary file. Write errors are
// remembered and reported by Commit(), so Append() stays a plain ByteSink call.
class AtomicFileWriter final : public ByteSink {
 public:
  static Result<std::unique_ptr<AtomicFileWriter>> Open(const std::string& path);
  ~AtomicFileWriter() override;
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void Append(std::span<const uint8_t> bytes) override;
  uint64_t size() const override { return n_bytes_; }
  Status Commit();

 private:
  AtomicFileWriter(std::string path, std::string tmp_path, int fd);
  Status Flush();

  std::string path_;
  std::string tmp_path_;
  int fd_;
  uint64_t n_bytes_ = 0;
  std::vector<uint8_t> buffer_;
  Status error_;
  bool committed_ = false;
};

bool PathExists(const std::string& path);
// Creates the directory and its parents; OK if it exists.
Status CreateDirectories(const std::string& path);
Status RemoveFile(const std::string& path);
Result<uint64_t> FileSize(const std::string& path);
// Bytes available to an unprivileged user on the filesystem holding `path`.
Result<uint64_t> FreeDiskBytes(const std::string& path);
// The size of the file system holding `path`.
Result<uint64_t> DiskSizeBytes(const std::string& path);

}  // namespace kvault
