#include "kvault/store/record_log.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include "kvault/base/coding.h"
#include "kvault/base/file.h"
#include "kvault/base/hash.h"
#include "kvault/base/status_macros.h"

namespace kvault::store {
namespace {

constexpr std::string_view kMagic = "KVLOG01\n";
constexpr size_t kRecordHeader = 4 + 8;

std::string Frame(std::string_view payload) {
  std::vector<uint8_t> bytes;
  VectorSink out(&bytes);
  PutFixed<uint32_t>(&out, static_cast<uint32_t>(payload.size()));
  PutFixed<uint64_t>(&out, Hash64(payload));
  out.Append(AsBytes(payload));
  return std::string(bytes.begin(), bytes.end());
}

// The intact records of `bytes` (after the magic) and where they end.
uint64_t ParseRecords(std::span<const uint8_t> bytes, std::vector<std::string>* records) {
  SpanSource in(bytes);
  uint64_t good = in.offset();
  while (in.remaining() >= kRecordHeader) {
    uint32_t size = 0;
    uint64_t checksum = 0;
    if (!GetFixed(&in, &size).ok() || !GetFixed(&in, &checksum).ok()) break;
    Result<std::span<const uint8_t>> payload = in.ReadView(size);
    if (!payload.ok() || Hash64(*payload) != checksum) break;
    records->emplace_back(payload->begin(), payload->end());
    good = in.offset();
  }
  return good;
}

}  // namespace

Result<RecordLog::Opened> RecordLog::Open(const std::string& path) {
  Opened opened;
  std::vector<uint8_t> bytes;
  if (PathExists(path)) {
    KV_ASSIGN_OR_RETURN(bytes, ReadFileToBytes(path));
  }
  const bool fresh = bytes.size() < kMagic.size();
  if (!fresh && std::memcmp(bytes.data(), kMagic.data(), kMagic.size()) != 0) {
    return CorruptionError(path + " is not a kvault record log");
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 && (errno == EROFS || errno == EACCES) && !fresh) {
    // A read-only disk or folder: the records are there to read; appends fail (as a full
    // disk's do) until the log is opened again on a writable one.
    const int saved = errno;
    const uint64_t end =
        kMagic.size() +
        ParseRecords(std::span<const uint8_t>(bytes).subspan(kMagic.size()), &opened.records);
    opened.dropped_bytes = bytes.size() - end;
    opened.log = std::unique_ptr<RecordLog>(new RecordLog(path, -1, end));
    opened.log->read_only_errno_ = saved;
    return opened;
  }
  if (fd < 0) return ErrnoError("open " + path, errno);
  uint64_t end = kMagic.size();
  if (fresh) {
    // Empty, or torn inside the magic itself: start over.
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, kMagic.data(), kMagic.size(), 0) != static_cast<ssize_t>(kMagic.size())) {
      const int saved = errno;
      ::close(fd);
      return ErrnoError("write " + path, saved);
    }
  } else {
    end += ParseRecords(std::span<const uint8_t>(bytes).subspan(kMagic.size()), &opened.records);
    opened.dropped_bytes = bytes.size() - end;
    if (opened.dropped_bytes > 0 && ::ftruncate(fd, static_cast<off_t>(end)) != 0) {
      const int saved = errno;
      ::close(fd);
      return ErrnoError("truncate " + path, saved);
    }
  }
  opened.log = std::unique_ptr<RecordLog>(new RecordLog(path, fd, end));
  return opened;
}

Result<std::unique_ptr<RecordLog>> RecordLog::OpenForAppend(const std::string& path) {
  KV_ASSIGN_OR_RETURN(uint64_t size, FileSize(path));
  if (size < kMagic.size()) return CorruptionError(path + " is not a kvault record log");
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + path, errno);
  return std::unique_ptr<RecordLog>(new RecordLog(path, fd, size));
}

Status RecordLog::Rewrite(const std::string& path, std::span<const std::string> records) {
  std::string bytes(kMagic);
  for (const std::string& record : records) bytes += Frame(record);
  return WriteFileAtomic(path, bytes);
}

RecordLog::~RecordLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status RecordLog::Append(std::string_view payload, bool sync) {
  if (fd_ < 0) return ErrnoError("append to " + path_, read_only_errno_);
  const std::string framed = Frame(payload);
  size_t written = 0;
  while (written < framed.size()) {
    const ssize_t n = ::pwrite(fd_, framed.data() + written, framed.size() - written,
                               static_cast<off_t>(size_ + written));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      // Cut a partial record off so the log stays well-formed for the next append.
      [[maybe_unused]] const int rc = ::ftruncate(fd_, static_cast<off_t>(size_));
      return ErrnoError("append to " + path_, saved);
    }
    written += static_cast<size_t>(n);
  }
  if (sync && ::fdatasync(fd_) != 0) return ErrnoError("fdatasync " + path_, errno);
  size_ += framed.size();
  return Status::Ok();
}

}  // namespace kvault::store
