// base/hash.h: fast non-cryptographic hashes (XXH3 from libxxhash) for block names, model
// fingerprints and checksums. Stable across runs and machines: values are persisted on disk.
//
// Thread-safety: free functions are pure; a Hasher is single-threaded.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace kvault {

struct Hash128 {
  uint64_t low = 0;
  uint64_t high = 0;

  // 32 lowercase hex digits, high word first.
  std::string ToHex() const;
  friend bool operator==(const Hash128&, const Hash128&) = default;
};

uint64_t Hash64(std::span<const uint8_t> bytes, uint64_t seed = 0);
uint64_t Hash64(std::string_view text, uint64_t seed = 0);
Hash128 HashBytes128(std::span<const uint8_t> bytes);

// Streaming XXH3-128: Update() any number of times, then Digest128() (or its low word,
// Digest64()).
class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void Update(std::span<const uint8_t> bytes);
  void Update(std::string_view text);
  // Hashes the object's bytes; for integers and other padding-free types only.
  template <typename T>
  void UpdatePod(const T& value) {
    Update(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }
  uint64_t Digest64() const;
  Hash128 Digest128() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kvault
