// base/coding.h: little-endian fixed-width integers and varints, and the 3-method byte
// sink / source every serializer in kvault writes to and reads from [llama.cpp llama_io_*].
// A CountingSink gives the size of an encoding without building it.
//
// Thread-safety: sinks and sources are single-threaded objects.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"

namespace kvault {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void Append(std::span<const uint8_t> bytes) = 0;
  virtual uint64_t size() const = 0;
  virtual void Reserve(uint64_t /*n_bytes*/) {}
};

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads exactly out.size() bytes; Corruption if fewer remain.
  virtual Status Read(std::span<uint8_t> out) = 0;
  // Skips n bytes; Corruption if fewer remain.
  virtual Status Skip(uint64_t n_bytes) = 0;
  virtual uint64_t remaining() const = 0;
};

// Appends to a caller-owned vector.
class VectorSink final : public ByteSink {
 public:
  explicit VectorSink(std::vector<uint8_t>* out) : out_(out) {}
  void Append(std::span<const uint8_t> bytes) override {
    out_->insert(out_->end(), bytes.begin(), bytes.end());
  }
  uint64_t size() const override { return out_->size(); }
  void Reserve(uint64_t n_bytes) override { out_->reserve(out_->size() + n_bytes); }

 private:
  std::vector<uint8_t>* out_;
};

class CountingSink final : public ByteSink {
 public:
  void Append(std::span<const uint8_t> bytes) override { n_bytes_ += bytes.size(); }
  uint64_t size() const override { return n_bytes_; }

 private:
  uint64_t n_bytes_ = 0;
};

// Reads from a span the caller keeps alive.
class SpanSource final : public ByteSource {
 public:
  explicit SpanSource(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  Status Read(std::span<uint8_t> out) override;
  Status Skip(uint64_t n_bytes) override;
  uint64_t remaining() const override { return bytes_.size() - offset_; }
  uint64_t offset() const { return offset_; }
  // A view of the next n bytes without copying, valid while the span is; advances.
  Result<std::span<const uint8_t>> ReadView(uint64_t n_bytes);

 private:
  std::span<const uint8_t> bytes_;
  uint64_t offset_ = 0;
};

inline std::span<const uint8_t> AsBytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// Fixed-width little-endian. kvault only builds for little-endian hosts (checked in
// coding.cc), so these are plain copies.
template <typename T>
void PutFixed(ByteSink* sink, T value) {
  static_assert(std::is_trivially_copyable_v<T>);
  uint8_t bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  sink->Append(bytes);
}

template <typename T>
Status GetFixed(ByteSource* source, T* value) {
  static_assert(std::is_trivially_copyable_v<T>);
  uint8_t bytes[sizeof(T)];
  Status status = source->Read(bytes);
  if (!status.ok()) return status;
  std::memcpy(value, bytes, sizeof(T));
  return Status::Ok();
}

void PutVarint64(ByteSink* sink, uint64_t value);
Status GetVarint64(ByteSource* source, uint64_t* value);

// A varint length followed by the bytes.
void PutLengthPrefixed(ByteSink* sink, std::string_view bytes);
Status GetLengthPrefixed(ByteSource* source, std::string* bytes, uint64_t max_bytes);

}  // namespace kvault
