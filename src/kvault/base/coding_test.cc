#include "kvault/base/coding.h"

#include <limits>

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(CodingTest, FixedRoundTrip) {
  std::vector<uint8_t> bytes;
  VectorSink sink(&bytes);
  PutFixed<uint32_t>(&sink, 0xaf143cd8u);
  PutFixed<int64_t>(&sink, -5);
  PutFixed<float>(&sink, 1.5f);
  ASSERT_EQ(bytes.size(), 16u);
  EXPECT_EQ(bytes[0], 0xd8);  // little-endian

  SpanSource source(bytes);
  uint32_t a = 0;
  int64_t b = 0;
  float c = 0;
  ASSERT_TRUE(GetFixed(&source, &a).ok());
  ASSERT_TRUE(GetFixed(&source, &b).ok());
  ASSERT_TRUE(GetFixed(&source, &c).ok());
  EXPECT_EQ(a, 0xaf143cd8u);
  EXPECT_EQ(b, -5);
  EXPECT_EQ(c, 1.5f);
  EXPECT_EQ(source.remaining(), 0u);
}

TEST(CodingTest, ReadPastEndIsCorruption) {
  const uint8_t bytes[3] = {1, 2, 3};
  SpanSource source(bytes);
  uint32_t value = 0;
  Status status = GetFixed(&source, &value);
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_EQ(source.remaining(), 3u);  // a failed read consumes nothing
}

TEST(CodingTest, VarintRoundTripAtBoundaries) {
  const uint64_t values[] = {
      0, 1, 127, 128, 16383, 16384, (1ull << 35) + 3, std::numeric_limits<uint64_t>::max()};
  std::vector<uint8_t> bytes;
  VectorSink sink(&bytes);
  for (uint64_t v : values) PutVarint64(&sink, v);
  SpanSource source(bytes);
  for (uint64_t v : values) {
    uint64_t decoded = 0;
    ASSERT_TRUE(GetVarint64(&source, &decoded).ok());
    EXPECT_EQ(decoded, v);
  }
}

TEST(CodingTest, OverlongVarintIsRejected) {
  std::vector<uint8_t> bytes(11, 0xff);
  SpanSource source(bytes);
  uint64_t value = 0;
  EXPECT_EQ(GetVarint64(&source, &value).code(), StatusCode::kCorruption);
}

TEST(CodingTest, LengthPrefixedRespectsLimit) {
  std::vector<uint8_t> bytes;
  VectorSink sink(&bytes);
  PutLengthPrefixed(&sink, "hello");
  std::string out;
  SpanSource ok_source(bytes);
  ASSERT_TRUE(GetLengthPrefixed(&ok_source, &out, 100).ok());
  EXPECT_EQ(out, "hello");
  SpanSource limited(bytes);
  EXPECT_EQ(GetLengthPrefixed(&limited, &out, 4).code(), StatusCode::kCorruption);
}

TEST(CodingTest, CountingSinkCountsWithoutStoring) {
  CountingSink sink;
  PutFixed<uint64_t>(&sink, 1);
  PutVarint64(&sink, 300);
  EXPECT_EQ(sink.size(), 10u);
}

}  // namespace
}  // namespace kvault
