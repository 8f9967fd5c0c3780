// libFuzzer target: the record log reader (store/record_log.h) that conversation journals
// are replayed from at start-up, on an arbitrary file (torn, corrupt, not a log at all).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include <unistd.h>

#include "kvault/store/record_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/kvault_record_log_fuzz_" + std::to_string(::getpid());
  // A plain write, not WriteFileAtomic: its fsync would cap the fuzzer at ~2k runs a second.
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return 0;
  const bool written = std::fwrite(data, 1, size, file) == size;
  if (std::fclose(file) != 0 || !written) return 0;
  kvault::store::RecordLog::Open(path).status().IgnoreError();
  return 0;
}
