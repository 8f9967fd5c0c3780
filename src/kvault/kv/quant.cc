#include "kvault/kv/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <ggml.h>

namespace kvault::kv {
namespace {

float ToFloat(uint16_t bits) {
  ggml_fp16_t h;
  std::memcpy(&h, &bits, sizeof(h));
  return ggml_fp16_to_fp32(h);
}

uint16_t ToHalf(float value) {
  const ggml_fp16_t h = ggml_fp32_to_fp16(value);
  uint16_t bits;
  std::memcpy(&bits, &h, sizeof(bits));
  return bits;
}

float AbsMax(std::span<const uint16_t> values) {
  float m = 0;
  for (uint16_t v : values) {
    const float f = std::fabs(ToFloat(v));
    if (std::isfinite(f)) m = std::max(m, f);
  }
  return m;
}

size_t Groups(size_t row_len) { return (row_len + kQ4Group - 1) / kQ4Group; }

}  // namespace

size_t Q8EncodedSize(size_t n_values, size_t row_len) {
  return n_values + (n_values / row_len) * sizeof(float);
}

size_t Q4EncodedSize(size_t n_values, size_t row_len) {
  const size_t rows = n_values / row_len;
  return rows * (Groups(row_len) * sizeof(uint16_t) + (row_len + 1) / 2);
}

void EncodeQ8(std::span<const uint16_t> f16, size_t row_len, std::vector<uint8_t>* out) {
  for (size_t start = 0; start + row_len <= f16.size(); start += row_len) {
    const std::span<const uint16_t> row = f16.subspan(start, row_len);
    const float scale = AbsMax(row) / 127.0f;
    const float inverse = scale > 0 ? 1.0f / scale : 0.0f;
    const auto* scale_bytes = reinterpret_cast<const uint8_t*>(&scale);
    out->insert(out->end(), scale_bytes, scale_bytes + sizeof(scale));
    for (uint16_t v : row) {
      const float q = std::clamp(std::round(ToFloat(v) * inverse), -127.0f, 127.0f);
      out->push_back(static_cast<uint8_t>(static_cast<int8_t>(std::isfinite(q) ? q : 0)));
    }
  }
}

Status DecodeQ8(std::span<const uint8_t> in, size_t n_values, size_t row_len, uint16_t* f16) {
  if (row_len == 0 || n_values % row_len != 0 || in.size() < Q8EncodedSize(n_values, row_len)) {
    return CorruptionError("q8 payload is " + std::to_string(in.size()) + " bytes, need " +
                           std::to_string(Q8EncodedSize(n_values, row_len)));
  }
  size_t offset = 0;
  for (size_t start = 0; start < n_values; start += row_len) {
    float scale = 0;
    std::memcpy(&scale, in.data() + offset, sizeof(scale));
    offset += sizeof(scale);
    if (!std::isfinite(scale)) return CorruptionError("q8 scale is not finite");
    for (size_t i = 0; i < row_len; ++i) {
      f16[start + i] = ToHalf(static_cast<int8_t>(in[offset + i]) * scale);
    }
    offset += row_len;
  }
  return Status::Ok();
}

void EncodeQ4(std::span<const uint16_t> f16, size_t row_len, std::vector<uint8_t>* out) {
  for (size_t start = 0; start + row_len <= f16.size(); start += row_len) {
    const std::span<const uint16_t> row = f16.subspan(start, row_len);
    std::vector<float> inverse(Groups(row_len));
    for (size_t g = 0; g < inverse.size(); ++g) {
      const size_t n = std::min(kQ4Group, row_len - g * kQ4Group);
      const float scale = AbsMax(row.subspan(g * kQ4Group, n)) / 7.0f;
      const uint16_t half = ToHalf(scale);
      out->push_back(static_cast<uint8_t>(half & 0xff));
      out->push_back(static_cast<uint8_t>(half >> 8));
      const float stored = ToFloat(half);
      inverse[g] = stored > 0 ? 1.0f / stored : 0.0f;
    }
    for (size_t i = 0; i < row_len; i += 2) {
      auto nibble = [&](size_t k) -> uint8_t {
        if (k >= row_len) return 0;
        const float q =
            std::clamp(std::round(ToFloat(row[k]) * inverse[k / kQ4Group]), -8.0f, 7.0f);
        return static_cast<uint8_t>(static_cast<int>(std::isfinite(q) ? q : 0) & 0x0f);
      };
      out->push_back(static_cast<uint8_t>(nibble(i) | (nibble(i + 1) << 4)));
    }
  }
}

Status DecodeQ4(std::span<const uint8_t> in, size_t n_values, size_t row_len, uint16_t* f16) {
  if (row_len == 0 || n_values % row_len != 0 || in.size() < Q4EncodedSize(n_values, row_len)) {
    return CorruptionError("q4 payload is " + std::to_string(in.size()) + " bytes, need " +
                           std::to_string(Q4EncodedSize(n_values, row_len)));
  }
  const size_t groups = Groups(row_len);
  size_t offset = 0;
  std::vector<float> scales(groups);
  for (size_t start = 0; start < n_values; start += row_len) {
    for (size_t g = 0; g < groups; ++g, offset += 2) {
      scales[g] = ToFloat(static_cast<uint16_t>(in[offset] | (in[offset + 1] << 8)));
      if (!std::isfinite(scales[g])) return CorruptionError("q4 scale is not finite");
    }
    for (size_t i = 0; i < row_len; ++i) {
      const uint8_t byte = in[offset + i / 2];
      int q = (i % 2 == 0) ? (byte & 0x0f) : (byte >> 4);
      if (q >= 8) q -= 16;  // sign-extend the nibble
      f16[start + i] = ToHalf(static_cast<float>(q) * scales[i / kQ4Group]);
    }
    offset += (row_len + 1) / 2;
  }
  return Status::Ok();
}

}  // namespace kvault::kv
