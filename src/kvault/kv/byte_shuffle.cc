#include "kvault/kv/byte_shuffle.h"

namespace kvault::kv {

std::vector<uint8_t> ByteShuffle(std::span<const uint8_t> data, size_t width) {
  std::vector<uint8_t> out(data.size());
  const size_t n = data.size() / width;
  for (size_t i = 0; i < n; ++i) {
    for (size_t b = 0; b < width; ++b) out[b * n + i] = data[i * width + b];
  }
  for (size_t i = n * width; i < data.size(); ++i) out[i] = data[i];
  return out;
}

std::vector<uint8_t> ByteUnshuffle(std::span<const uint8_t> data, size_t width) {
  std::vector<uint8_t> out(data.size());
  const size_t n = data.size() / width;
  for (size_t i = 0; i < n; ++i) {
    for (size_t b = 0; b < width; ++b) out[i * width + b] = data[b * n + i];
  }
  for (size_t i = n * width; i < data.size(); ++i) out[i] = data[i];
  return out;
}

}  // namespace kvault::kv
