// kv/quant.h: the at-rest quantizers for f16 KV rows. Both decode back to f16, the cache's
// compute type, so a restored block costs no compute speed (unlike llama.cpp's quantized
// cache types, which slow attention on the CPU).
//
//   q8: per row, one f32 scale (absmax / 127) and one int8 per value: ~8.25 bits/value
//   q4: per group of 32 values, one f16 scale (absmax / 7) and one int4 per value (two per
//       byte): 4.5 bits/value; a row's last group may be shorter
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvault/base/result.h"

namespace kvault::kv {

inline constexpr size_t kQ4Group = 32;

// `f16` holds n_rows rows of row_len f16 values (raw bits). Appends the encoding to `out`.
void EncodeQ8(std::span<const uint16_t> f16, size_t row_len, std::vector<uint8_t>* out);
void EncodeQ4(std::span<const uint16_t> f16, size_t row_len, std::vector<uint8_t>* out);
size_t Q8EncodedSize(size_t n_values, size_t row_len);
size_t Q4EncodedSize(size_t n_values, size_t row_len);

// Decode n_values f16 values (in rows of row_len) from `in`. Corruption if `in` is too short.
Status DecodeQ8(std::span<const uint8_t> in, size_t n_values, size_t row_len, uint16_t* f16);
Status DecodeQ4(std::span<const uint8_t> in, size_t n_values, size_t row_len, uint16_t* f16);

}  // namespace kvault::kv
