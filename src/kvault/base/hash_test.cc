#include "kvault/base/hash.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(HashTest, StableKnownValue) {
  // XXH3-64 of the empty input with seed 0 is a published constant; persisted block names
  // depend on it never changing.
  EXPECT_EQ(Hash64(std::string_view()), 0x2d06800538d394c2ull);
}

TEST(HashTest, SeedAndInputChangeTheHash) {
  EXPECT_NE(Hash64("abc"), Hash64("abd"));
  EXPECT_NE(Hash64("abc", 1), Hash64("abc", 2));
}

TEST(HashTest, StreamingMatchesIncrementalSplits) {
  Hasher whole;
  whole.Update("hello world");
  Hasher split;
  split.Update("hello");
  split.Update(" world");
  EXPECT_EQ(whole.Digest128(), split.Digest128());
  EXPECT_EQ(whole.Digest128(), HashBytes128(std::span<const uint8_t>(
                                   reinterpret_cast<const uint8_t*>("hello world"), 11)));
}

}  // namespace
}  // namespace kvault
