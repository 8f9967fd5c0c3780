// libFuzzer target: the parser of llama.cpp's sequence-state bytes (kv/snapshot_layout.h),
// which reads restored and imported snapshots, and the at-rest block decoder
// (kv/snapshot_codec.h), which reads block files from the disk tier.
#include <cstddef>
#include <cstdint>
#include <span>

#include "kvault/kv/snapshot_codec.h"
#include "kvault/kv/snapshot_layout.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  kvault::kv::ParseSnapshot(bytes).status().IgnoreError();
  kvault::kv::DecodeBlock(bytes).status().IgnoreError();
  return 0;
}
