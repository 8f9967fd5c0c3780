// libFuzzer target: the record log reader (store/record_log.h) that conversation journals
// are replayed from at start-up, on an arbitrary file (torn, corrupt, not a log at all): the
// input is the file's content. Checks, beyond crashes, leaks and UB: the records read back
// and the bytes dropped account for the whole file, and the log then ends after the last
// record kept.
#include <cstddef>
#include <cstdint>
#include <string>

#include <fcntl.h>
#include <unistd.h>

#include "kvault/base/check.h"
#include "kvault/store/record_log.h"

namespace {

constexpr uint64_t kMagicBytes = 8;   // "KVLOG01\n"
constexpr uint64_t kFrameBytes = 12;  // u32 size, u64 checksum

// A private folder's parent: tmpfs when there is one. On ext4 every file or folder made and
// deleted costs journaling (~0.1-0.3 ms), more than the code under test.
std::string TempRoot() { return ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; }

// The one file every input is written to, open for the process's lifetime.
struct LogFile {
  std::string path = TempRoot() + "/kvault_record_log_fuzz_" + std::to_string(::getpid());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ~LogFile() {
    ::close(fd);
    ::unlink(path.c_str());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static LogFile file;
  if (file.fd < 0) return 0;
  // Overwritten in place, then cut to size. Neither WriteFileAtomic (its fsyncs) nor O_TRUNC:
  // on ext4 a file truncated to 0 is flushed to the disk when closed (auto_da_alloc), which
  // capped this target at ~5k runs a second.
  size_t written = 0;
  while (written < size) {
    const ssize_t n =
        ::pwrite(file.fd, data + written, size - written, static_cast<off_t>(written));
    if (n <= 0) return 0;
    written += static_cast<size_t>(n);
  }
  if (::ftruncate(file.fd, static_cast<off_t>(size)) != 0) return 0;
  kvault::Result<kvault::store::RecordLog::Opened> opened =
      kvault::store::RecordLog::Open(file.path);
  if (!opened.ok()) return 0;
  uint64_t kept = kMagicBytes;
  for (const std::string& record : opened->records) kept += kFrameBytes + record.size();
  // Shorter than the magic: a fresh log (nothing kept, nothing counted as dropped).
  if (size >= kMagicBytes) KV_CHECK(kept + opened->dropped_bytes == size, "bytes unaccounted for");
  KV_CHECK(opened->log->size_bytes() == kept, "the log does not end after its last record");
  return 0;
}
