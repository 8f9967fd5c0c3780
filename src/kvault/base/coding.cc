#include "kvault/base/coding.h"

#include <algorithm>
#include <bit>
#include <string>

namespace kvault {

static_assert(std::endian::native == std::endian::little,
              "kvault's on-disk formats assume a little-endian host");

Status SpanSource::Read(std::span<uint8_t> out) {
  if (out.size() > remaining()) {
    return CorruptionError("unexpected end of data: need " + std::to_string(out.size()) +
                           " bytes at offset " + std::to_string(offset_) + ", have " +
                           std::to_string(remaining()));
  }
  if (!out.empty()) std::memcpy(out.data(), bytes_.data() + offset_, out.size());
  offset_ += out.size();
  return Status::Ok();
}

Status SpanSource::Skip(uint64_t n_bytes) {
  if (n_bytes > remaining()) {
    return CorruptionError("unexpected end of data: skip " + std::to_string(n_bytes) +
                           " bytes at offset " + std::to_string(offset_) + ", have " +
                           std::to_string(remaining()));
  }
  offset_ += n_bytes;
  return Status::Ok();
}

Result<std::span<const uint8_t>> SpanSource::ReadView(uint64_t n_bytes) {
  if (n_bytes > remaining()) {
    return CorruptionError("unexpected end of data: need " + std::to_string(n_bytes) +
                           " bytes at offset " + std::to_string(offset_) + ", have " +
                           std::to_string(remaining()));
  }
  std::span<const uint8_t> view = bytes_.subspan(offset_, n_bytes);
  offset_ += n_bytes;
  return view;
}

void PutVarint64(ByteSink* sink, uint64_t value) {
  uint8_t bytes[10];
  size_t n = 0;
  while (value >= 0x80) {
    bytes[n++] = static_cast<uint8_t>(value | 0x80);
    value >>= 7;
  }
  bytes[n++] = static_cast<uint8_t>(value);
  sink->Append(std::span<const uint8_t>(bytes, n));
}

Status GetVarint64(ByteSource* source, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63; shift += 7) {
    uint8_t byte = 0;
    Status status = source->Read(std::span<uint8_t>(&byte, 1));
    if (!status.ok()) return status;
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return Status::Ok();
    }
  }
  return CorruptionError("varint longer than 10 bytes");
}

void PutLengthPrefixed(ByteSink* sink, std::string_view bytes) {
  PutVarint64(sink, bytes.size());
  sink->Append(AsBytes(bytes));
}

Status GetLengthPrefixed(ByteSource* source, std::string* bytes, uint64_t max_bytes) {
  uint64_t length = 0;
  Status status = GetVarint64(source, &length);
  if (!status.ok()) return status;
  if (length > max_bytes || length > source->remaining()) {
    return CorruptionError("length prefix " + std::to_string(length) + " exceeds the " +
                           std::to_string(std::min(max_bytes, source->remaining())) +
                           " bytes allowed");
  }
  bytes->resize(length);
  return source->Read(std::span<uint8_t>(reinterpret_cast<uint8_t*>(bytes->data()), length));
}

}  // namespace kvault
