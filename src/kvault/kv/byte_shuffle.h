// kv/byte_shuffle.h: regroups the bytes of fixed-width elements by byte position (all first
// bytes, then all second bytes, ...). f16 KV values have similar high bytes, so after a
// shuffle zstd finds runs it cannot see in the interleaved form [blosc's shuffle filter].
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kvault::kv {

// REQUIRES: width > 0. A trailing partial element is copied unchanged.
std::vector<uint8_t> ByteShuffle(std::span<const uint8_t> data, size_t width);
std::vector<uint8_t> ByteUnshuffle(std::span<const uint8_t> data, size_t width);

}  // namespace kvault::kv
