#include "kvault/base/hash.h"

#include <cstdio>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kvault/base/check.h"

namespace kvault {

struct Hasher::State {
  XXH3_state_t xxh;
};

std::string Hash128::ToHex() const {
  char buffer[33];
  std::snprintf(buffer, sizeof(buffer), "%016llx%016llx", static_cast<unsigned long long>(high),
                static_cast<unsigned long long>(low));
  return buffer;
}

uint64_t Hash64(std::span<const uint8_t> bytes, uint64_t seed) {
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

uint64_t Hash64(std::string_view text, uint64_t seed) {
  return XXH3_64bits_withSeed(text.data(), text.size(), seed);
}

Hash128 HashBytes128(std::span<const uint8_t> bytes) {
  const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return Hash128{h.low64, h.high64};
}

Hasher::Hasher() : state_(std::make_unique<State>()) {
  KV_CHECK(XXH3_128bits_reset(&state_->xxh) == XXH_OK, "XXH3 reset");
}

Hasher::~Hasher() = default;

void Hasher::Update(std::span<const uint8_t> bytes) {
  XXH3_128bits_update(&state_->xxh, bytes.data(), bytes.size());
}

void Hasher::Update(std::string_view text) {
  Update(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

uint64_t Hasher::Digest64() const { return Digest128().low; }

Hash128 Hasher::Digest128() const {
  const XXH128_hash_t h = XXH3_128bits_digest(&state_->xxh);
  return Hash128{h.low64, h.high64};
}

}  // namespace kvault
