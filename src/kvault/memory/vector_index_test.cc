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

// Labels 2 apart, so that the full range (6,000 labels) goes through the graph and ranges of
// at most 4,096 labels are scored vector by vector (one index for both: hnswlib's
// per-element locks make every vector slow under ThreadSanitizer).
TEST(VectorIndexTest, FindsNearestWithinTheLabelRangeAndForgetsRemovedOnes) {
  std::mt19937 rng(5);
  std::unique_ptr<VectorIndex> index = VectorIndex::Create(32).value();
  std::vector<std::vector<float>> vectors;  // vectors[i] has label 2 i
  for (int64_t i = 0; i < 3000; ++i) {      // grows past the initial capacity
    vectors.push_back(RandomVector(rng, 32));
    ASSERT_TRUE(index->Add(2 * i, vectors.back()).ok());
  }
  EXPECT_EQ(index->size(), 3000u);
  std::vector<VectorHit> hits = index->Search(vectors[1234], 5, 0, 5998).value();  // graph
  ASSERT_EQ(hits.size(), 5u);
  EXPECT_EQ(hits[0].label, 2468);
  EXPECT_NEAR(hits[0].similarity, 1.0, 1e-4);
  EXPECT_GE(hits[0].similarity, hits[4].similarity);
  hits = index->Search(vectors[1234], 3, 4000, 5998).value();  // exact
  ASSERT_EQ(hits.size(), 3u);
  for (const VectorHit& hit : hits) EXPECT_GE(hit.label, 4000);
  // A narrow range (a day's chunks) gives exactly its best vectors.
  const std::vector<float> query = RandomVector(rng, 32);
  std::vector<std::pair<double, int64_t>> expected;
  for (int64_t i = 100; i <= 140; ++i) expected.push_back({Cosine(query, vectors[i]), 2 * i});
  std::sort(expected.rbegin(), expected.rend());
  const std::vector<VectorHit> narrow = index->Search(query, 5, 200, 280).value();
  ASSERT_EQ(narrow.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(narrow[i].label, expected[i].second) << i;
    EXPECT_NEAR(narrow[i].similarity, expected[i].first, 1e-4) << i;
  }
  index->Remove(2468);
  index->Remove(99999);  // unknown: no-op
  EXPECT_EQ(index->size(), 2999u);
  EXPECT_NE(index->Search(vectors[1234], 1, 0, 5998).value()[0].label, 2468);
  EXPECT_NE(index->Search(vectors[1234], 1, 2400, 2500).value()[0].label, 2468);
  ASSERT_TRUE(index->Add(2468, vectors[1234]).ok());  // re-added
  EXPECT_EQ(index->Search(vectors[1234], 1, 0, 5998).value()[0].label, 2468);
  EXPECT_EQ(index->Search(vectors[1234], 1, 2400, 2500).value()[0].label, 2468);
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
