#include "kvault/base/file.h"

#include <cerrno>
#include <filesystem>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "kvault/base/coding.h"
#include "kvault/base/status_macros.h"

namespace kvault {
namespace {

constexpr size_t kBufferBytes = 1 << 20;

Status WriteAll(int fd, std::span<const uint8_t> bytes, const std::string& path) {
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write " + path, errno);
    }
    written += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status SyncDirectoryOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open directory " + dir, errno);
  const int rc = ::fsync(fd);
  const int saved_errno = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync directory " + dir, saved_errno);
  return Status::Ok();
}

}  // namespace

Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create " + tmp, errno);
  Status status = WriteAll(fd, bytes, tmp);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoError("fsync " + tmp, errno);
  if (::close(fd) != 0 && status.ok()) status = ErrnoError("close " + tmp, errno);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError("rename " + tmp + " to " + path, errno);
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return SyncDirectoryOf(path);
}

Status WriteFileAtomic(const std::string& path, std::string_view bytes) {
  return WriteFileAtomic(path, AsBytes(bytes));
}

Result<std::vector<uint8_t>> ReadFileToBytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFoundError("no such file: " + path);
    return ErrnoError("open " + path, errno);
  }
  std::vector<uint8_t> bytes;
  struct stat info {};
  if (::fstat(fd, &info) == 0 && info.st_size > 0) bytes.reserve(info.st_size);
  uint8_t buffer[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int saved_errno = errno;
      ::close(fd);
      return ErrnoError("read " + path, saved_errno);
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), buffer, buffer + n);
  }
  ::close(fd);
  return bytes;
}

Result<std::string> ReadFileToString(const std::string& path) {
  KV_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileToBytes(path));
  return std::string(bytes.begin(), bytes.end());
}

Result<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Open(const std::string& path) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create " + tmp, errno);
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, std::move(tmp), fd));
}

AtomicFileWriter::AtomicFileWriter(std::string path, std::string tmp_path, int fd)
    : path_(std::move(path)), tmp_path_(std::move(tmp_path)), fd_(fd) {
  buffer_.reserve(kBufferBytes);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFileWriter::Append(std::span<const uint8_t> bytes) {
  n_bytes_ += bytes.size();
  if (!error_.ok()) return;
  if (buffer_.size() + bytes.size() > kBufferBytes) {
    error_ = Flush();
    if (!error_.ok()) return;
  }
  if (bytes.size() >= kBufferBytes) {
    error_ = WriteAll(fd_, bytes, tmp_path_);
    return;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

Status AtomicFileWriter::Flush() {
  Status status = WriteAll(fd_, buffer_, tmp_path_);
  buffer_.clear();
  return status;
}

Status AtomicFileWriter::Commit() {
  if (error_.ok()) error_ = Flush();
  if (error_.ok() && ::fsync(fd_) != 0) error_ = ErrnoError("fsync " + tmp_path_, errno);
  const int rc = ::close(fd_);
  fd_ = -1;
  if (error_.ok() && rc != 0) error_ = ErrnoError("close " + tmp_path_, errno);
  if (error_.ok() && ::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    error_ = ErrnoError("rename " + tmp_path_ + " to " + path_, errno);
  }
  if (!error_.ok()) return error_;
  committed_ = true;
  return SyncDirectoryOf(path_);
}

bool PathExists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

Status CreateDirectories(const std::string& path) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) return IOError("create directory " + path + ": " + error.message());
  return Status::Ok();
}

Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("remove " + path, errno);
  return Status::Ok();
}

Result<uint64_t> FileSize(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return NotFoundError("no such file: " + path);
    return ErrnoError("stat " + path, errno);
  }
  return static_cast<uint64_t>(info.st_size);
}

Result<uint64_t> FreeDiskBytes(const std::string& path) {
  struct statvfs info {};
  if (::statvfs(path.c_str(), &info) != 0) return ErrnoError("statvfs " + path, errno);
  return static_cast<uint64_t>(info.f_bavail) * info.f_frsize;
}

Result<uint64_t> DiskSizeBytes(const std::string& path) {
  struct statvfs info {};
  if (::statvfs(path.c_str(), &info) != 0) return ErrnoError("statvfs " + path, errno);
  return static_cast<uint64_t>(info.f_blocks) * info.f_frsize;
}

}  // namespace kvault
