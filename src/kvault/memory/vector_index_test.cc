#include "kvault/memory/vector_index.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <gtest/gtest.h>

namespace kvault::memory {
namespace {

std::vector<float> RandomVector(std::mt19937& rng, int32_t dim) {
  std::normal_distribution<float> normal;
  std::vector<float> v(static_cast<size_t>(dim));
  for (float& x : v) x = normal(rng);
  return v;
}

double Cosine(std::span<const float> a, std::span<const float> b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / std::sqrt(na * nb);
}

TEST(VectorIndexTest, FindsNearestWithinTheLabelRangeAndForgetsRemovedOnes) {
  std::mt19937 rng(5);
  std::unique_ptr<VectorIndex> index = VectorIndex::Create(32).value();
  std::vector<std::vector<float>> vectors;
  for (int64_t label = 0; label < 3000; ++label) {  // grows past the initial capacity
    vectors.push_back(RandomVector(rng, 32));
    ASSERT_TRUE(index->Add(label, vectors.back()).ok());
  }
  EXPECT_EQ(index->size(), 3000u);
  std::vector<VectorHit> hits = index->Search(vectors[1234], 5, 0, 2999).value();
  ASSERT_EQ(hits.size(), 5u);
  EXPECT_EQ(hits[0].label, 1234);
  EXPECT_NEAR(hits[0].similarity, 1.0, 1e-4);
  EXPECT_GE(hits[0].similarity, hits[4].similarity);
  hits = index->Search(vectors[1234], 3, 2000, 2999).value();
  ASSERT_EQ(hits.size(), 3u);
  for (const VectorHit& hit : hits) EXPECT_GE(hit.label, 2000);
  index->Remove(1234);
  index->Remove(99999);  // unknown: no-op
  EXPECT_EQ(index->size(), 2999u);
  EXPECT_NE(index->Search(vectors[1234], 1, 0, 2999).value()[0].label, 1234);
  ASSERT_TRUE(index->Add(1234, vectors[1234]).ok());  // re-added
  EXPECT_EQ(index->Search(vectors[1234], 1, 0, 2999).value()[0].label, 1234);
}

// Wide ranges go through the graph; narrow ones (a day's chunks) are scored one by one, and
// must give exactly the best of the range.
TEST(VectorIndexTest, NarrowRangesAreSearchedExactlyAndWideOnesThroughTheGraph) {
  std::mt19937 rng(5);
  std::unique_ptr<VectorIndex> index = VectorIndex::Create(16).value();
  std::vector<std::vector<float>> vectors;
  for (int64_t label = 0; label < 6000; ++label) {
    vectors.push_back(RandomVector(rng, 16));
    ASSERT_TRUE(index->Add(label, vectors.back()).ok());
  }
  index->Remove(120);
  const std::vector<VectorHit> wide = index->Search(vectors[4321], 3, 0, 5999).value();
  ASSERT_EQ(wide.size(), 3u);
  EXPECT_EQ(wide[0].label, 4321);
  const std::vector<float> query = RandomVector(rng, 16);
  std::vector<std::pair<double, int64_t>> expected;
  for (int64_t label = 100; label <= 140; ++label) {
    if (label != 120) expected.push_back({Cosine(query, vectors[label]), label});
  }
  std::sort(expected.rbegin(), expected.rend());
  const std::vector<VectorHit> narrow = index->Search(query, 5, 100, 140).value();
  ASSERT_EQ(narrow.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(narrow[i].label, expected[i].second) << i;
    EXPECT_NEAR(narrow[i].similarity, expected[i].first, 1e-4) << i;
  }
}

TEST(VectorIndexTest, RejectsBadVectors) {
  std::unique_ptr<VectorIndex> index = VectorIndex::Create(4).value();
  EXPECT_EQ(index->Add(1, std::vector<float>{1, 2, 3}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index->Add(1, std::vector<float>{0, 0, 0, 0}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index->Add(1, std::vector<float>{NAN, 0, 0, 1}).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(index->Search(std::vector<float>{1, 0, 0, 0}, 3, 0, 10).value().empty());
  EXPECT_FALSE(VectorIndex::Create(0).ok());
}

TEST(VectorIndexTest, StoredEmbeddingsKeepTheirDirection) {
  std::mt19937 rng(9);
  const std::vector<float> v = RandomVector(rng, 384);
  const std::string bytes = EncodeEmbedding(v);
  EXPECT_EQ(bytes.size(), 4u + 384u);
  const std::vector<float> back = DecodeEmbedding(bytes, 384).value();
  EXPECT_GT(Cosine(v, back), 0.999);
  EXPECT_EQ(DecodeEmbedding(bytes, 383).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeEmbedding(bytes.substr(0, 10), 384).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace kvault::memory
