// EmbeddingModel against real llama.cpp and the generated tiny model. Its weights are random,
// so the vectors mean nothing; these tests check the mechanics: shape, unit length,
// determinism, pooling over slices, truncation.
#include "kvault/engine/embedding_model.h"

#include <cmath>
#include <string>
#include <thread>

#include "tests/test_env.h"
#include <gtest/gtest.h>

#include "kvault/engine/model.h"

namespace kvault::engine {
namespace {

double Norm(const std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += static_cast<double>(x) * x;
  return std::sqrt(sum);
}

double Cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double dot = 0;
  for (size_t i = 0; i < a.size(); ++i) dot += static_cast<double>(a[i]) * b[i];
  return dot / (Norm(a) * Norm(b));
}

// `n` space-separated copies of `word` (one token each in the tiny model's vocabulary).
std::string Words(const std::string& word, int n) {
  std::string text;
  for (int i = 0; i < n; ++i) text += (i ? " " : "") + word;
  return text;
}

class EmbeddingModelTest : public ::testing::Test {
 protected:
  static std::unique_ptr<EmbeddingModel> Open(uint32_t n_ctx = 2048, uint32_t n_ubatch = 512) {
    Result<std::unique_ptr<EmbeddingModel>> model = EmbeddingModel::Create(
        {.path = testing::TestModelPath(), .n_threads = 2, .n_ctx = n_ctx, .n_ubatch = n_ubatch});
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    return model.ok() ? std::move(model).value() : nullptr;
  }

  static std::vector<float> Embed(EmbeddingModel& model, const std::string& text) {
    Result<std::vector<float>> vector = model.Embed(text);
    EXPECT_TRUE(vector.ok()) << vector.status().ToString();
    return vector.ok() ? *vector : std::vector<float>();
  }
};

TEST_F(EmbeddingModelTest, VectorsHaveTheModelsWidthAndUnitLength) {
  auto model = Open();
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->dim(), 256);                          // the tiny preset's n_embd
  EXPECT_EQ(model->pooling(), EmbeddingPooling::kMean);  // the tiny model declares none
  const std::vector<float> v = Embed(*model, "The blue garden locker opens with 4721.");
  ASSERT_EQ(v.size(), 256u);
  EXPECT_NEAR(Norm(v), 1.0, 1e-5);
  for (float x : v) ASSERT_TRUE(std::isfinite(x));
}

TEST_F(EmbeddingModelTest, TheSameTextGivesTheSameVectorAndOtherTextsDiffer) {
  auto model = Open();
  ASSERT_NE(model, nullptr);
  const std::vector<float> a = Embed(*model, "my sister's dog is called Biscuit");
  const std::vector<float> other = Embed(*model, "the train to the museum was late again");
  const std::vector<float> again = Embed(*model, "my sister's dog is called Biscuit");
  EXPECT_EQ(a, again);  // the cache is cleared between texts
  EXPECT_NE(a, other);
  EXPECT_LT(Cosine(a, other), 0.9999);
}

TEST_F(EmbeddingModelTest, ALongTextDecodedInSlicesMatchesOneSlice) {
  // 100 tokens in slices of 16 (the KV cache carries the earlier slices, the means are
  // weighted by length) must pool like one slice of 100.
  auto sliced = Open(/*n_ctx=*/256, /*n_ubatch=*/16);
  auto whole = Open(/*n_ctx=*/256, /*n_ubatch=*/256);
  ASSERT_NE(sliced, nullptr);
  ASSERT_NE(whole, nullptr);
  const std::string text = Words("garden", 50) + " " + Words("bicycle", 50);
  EXPECT_GT(Cosine(Embed(*sliced, text), Embed(*whole, text)), 0.9999);
}

TEST_F(EmbeddingModelTest, TextsBeyondTheContextAreCutToIt) {
  auto model = Open(/*n_ctx=*/256, /*n_ubatch=*/64);  // llama.cpp's smallest context
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->n_ctx(), 256u);
  // Both texts start with the same 256 tokens: what is beyond them is not seen.
  const std::vector<float> long_text = Embed(*model, Words("coffee", 600));
  EXPECT_EQ(long_text, Embed(*model, Words("coffee", 300)));
  EXPECT_NE(long_text, Embed(*model, Words("coffee", 100)));
}

TEST_F(EmbeddingModelTest, ConcurrentCallersGetTheSameVectorsAsOne) {
  auto model = Open();
  ASSERT_NE(model, nullptr);
  const std::vector<float> expected = Embed(*model, "rain on the window at dinner");
  std::vector<std::thread> threads;
  std::vector<std::vector<float>> results(4);
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = Embed(*model, "rain on the window at dinner"); });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::vector<float>& result : results) EXPECT_EQ(result, expected);
}

TEST_F(EmbeddingModelTest, EmptyTextAndMissingFilesAreErrors) {
  auto model = Open();
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->Embed("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingModel::Create({.path = "/nonexistent/embed.gguf"}).status().code(),
            StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvault::engine
