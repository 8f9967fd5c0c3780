// store/record_log.h: an append-only file of records, for state that grows by small steps
// (a conversation's turns): appending a turn writes only that turn, not the whole history.
//
// Format: the 8-byte magic "KVLOG01\n", then records of
//   u32 payload size | u64 XXH3-64 of the payload | payload
// A crash can leave a torn last record; Open keeps every record up to the first one that is
// incomplete or fails its checksum and truncates the file there (counted in `dropped_bytes`),
// so a later append never lands after garbage.
//
// Thread-safety: not thread-safe; the owner serializes appends.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"

namespace kvault::store {

class RecordLog {
 public:
  struct Opened {
    std::unique_ptr<RecordLog> log;
    std::vector<std::string> records;
    uint64_t dropped_bytes = 0;  // a torn or corrupt tail that was cut off
  };
  // Opens (creating if absent) and reads every intact record. Corruption if the file is not
  // a record log at all; IOError on I/O failure. An existing log on a read-only disk or
  // folder opens read-only: its records are read, and each Append fails with the reason.
  static Result<Opened> Open(const std::string& path);
  // Opens a log that Open() already checked (this process wrote or read it), for appending
  // without reading it again.
  static Result<std::unique_ptr<RecordLog>> OpenForAppend(const std::string& path);
  // Replaces the file's content by `records`, atomically (temp file, fsync, rename).
  static Status Rewrite(const std::string& path, std::span<const std::string> records);
  ~RecordLog();
  RecordLog(const RecordLog&) = delete;
  RecordLog& operator=(const RecordLog&) = delete;

  // Appends one record; with `sync`, it is on the disk when this returns (fdatasync).
  Status Append(std::string_view payload, bool sync);
  uint64_t size_bytes() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  RecordLog(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  std::string path_;
  int fd_;  // -1: opened read-only
  uint64_t size_;
  int read_only_errno_ = 0;
};

}  // namespace kvault::store
