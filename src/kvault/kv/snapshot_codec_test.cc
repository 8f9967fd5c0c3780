// The at-rest codec on real exported states of the tiny model.
#include "kvault/kv/snapshot_codec.h"

#include <cmath>
#include <cstring>
#include <random>

#include "tests/test_env.h"
#include <gtest/gtest.h>

#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/kv/byte_shuffle.h"

namespace kvault::kv {
namespace {

class SnapshotCodecTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = engine::Model::Load({.path = testing::TestModelPath()}).value().release();
  }
  static void TearDownTestSuite() { delete model_; }

  KvBlock Export(engine::KvCacheType type, engine::FlashAttention fa,
                 std::vector<llama_token>* tokens) {
    engine::ContextParams params;
    params.n_ctx = 512;
    params.n_threads = 2;
    params.cache_type = type;
    params.flash_attention = fa;
    std::unique_ptr<engine::Context> context = engine::Context::Create(*model_, params).value();
    std::string text;
    for (int i = 0; i < 20; ++i) text += "Entry " + std::to_string(i) + " of the ledger. ";
    *tokens = engine::Tokenizer(*model_).Tokenize(text).value();
    engine::BatchDecoder decoder(context.get());
    const engine::SequenceChunk chunk{0, 0, *tokens, true};
    EXPECT_TRUE(decoder.Decode({&chunk, 1}).ok());
    return ParseSnapshot(context->ExportSequence(0).value()).value();
  }

  BlockMeta Meta(const std::vector<llama_token>& tokens) {
    BlockMeta meta;
    meta.space.model_fingerprint = model_->fingerprint();
    meta.space.block_size = static_cast<uint32_t>(tokens.size());
    meta.tokens = tokens;
    meta.name = ComputeBlockName({}, meta.space, tokens);
    return meta;
  }

  // Mean relative error of f16 values: |a - b| summed over |a| summed.
  static double RelativeError(const KvBlock& a, const KvBlock& b) {
    const auto* x = reinterpret_cast<const ggml_fp16_t*>(a.data.data());
    const auto* y = reinterpret_cast<const ggml_fp16_t*>(b.data.data());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < a.data.size() / 2; ++i) {
      diff += std::fabs(ggml_fp16_to_fp32(x[i]) - ggml_fp16_to_fp32(y[i]));
      norm += std::fabs(ggml_fp16_to_fp32(x[i]));
    }
    return diff / norm;
  }

  static engine::Model* model_;
};

engine::Model* SnapshotCodecTest::model_ = nullptr;

TEST_F(SnapshotCodecTest, LosslessEncodingsGiveIdenticalBytesBack) {
  for (auto type :
       {engine::KvCacheType::kF16, engine::KvCacheType::kQ8_0, engine::KvCacheType::kQ4_0}) {
    for (auto fa : {engine::FlashAttention::kOn, engine::FlashAttention::kOff}) {
      if (type != engine::KvCacheType::kF16 && fa == engine::FlashAttention::kOff) continue;
      std::vector<llama_token> tokens;
      const KvBlock block = Export(type, fa, &tokens);
      for (bool zstd : {false, true}) {
        const std::vector<uint8_t> encoded =
            EncodeBlock(block, Meta(tokens), {BlockEncoding::kF16, zstd}).value();
        DecodedBlock decoded = DecodeBlock(encoded).value();
        EXPECT_EQ(decoded.block.data, block.data)
            << engine::KvCacheTypeName(type) << " zstd " << zstd;
        EXPECT_EQ(decoded.block.shape, block.shape);
        EXPECT_EQ(decoded.meta.tokens, tokens);
        EXPECT_EQ(decoded.meta.name, Meta(tokens).name);
      }
    }
  }
}

TEST_F(SnapshotCodecTest, ZstdAfterShuffleShrinksF16Blocks) {
  std::vector<llama_token> tokens;
  const KvBlock block = Export(engine::KvCacheType::kF16, engine::FlashAttention::kOn, &tokens);
  const size_t plain = EncodeBlock(block, Meta(tokens), {BlockEncoding::kF16, false})->size();
  const size_t packed = EncodeBlock(block, Meta(tokens), {BlockEncoding::kF16, true})->size();
  EXPECT_LT(packed, plain);
}

TEST_F(SnapshotCodecTest, QuantizedEncodingsAreSmallAndClose) {
  for (auto fa : {engine::FlashAttention::kOn, engine::FlashAttention::kOff}) {
    std::vector<llama_token> tokens;
    const KvBlock block = Export(engine::KvCacheType::kF16, fa, &tokens);
    const size_t raw = EncodeBlock(block, Meta(tokens), {BlockEncoding::kF16})->size();
    const std::vector<uint8_t> q8 = EncodeBlock(block, Meta(tokens), {BlockEncoding::kQ8}).value();
    const std::vector<uint8_t> q4 = EncodeBlock(block, Meta(tokens), {BlockEncoding::kQ4}).value();
    EXPECT_LT(q8.size(), raw * 0.6);
    EXPECT_LT(q4.size(), raw * 0.35);
    const DecodedBlock d8 = DecodeBlock(q8).value();
    const DecodedBlock d4 = DecodeBlock(q4).value();
    EXPECT_EQ(d8.meta.encoding, BlockEncoding::kQ8);
    EXPECT_EQ(d8.block.data.size(), block.data.size());
    const double e8 = RelativeError(block, d8.block);
    const double e4 = RelativeError(block, d4.block);
    EXPECT_LT(e8, 0.01);
    EXPECT_LT(e4, 0.12);
    EXPECT_LT(e8, e4);
    EXPECT_GT(e4, 0);
  }
}

TEST_F(SnapshotCodecTest, DamageIsAlwaysDetected) {
  std::vector<llama_token> tokens;
  const KvBlock block = Export(engine::KvCacheType::kF16, engine::FlashAttention::kOn, &tokens);
  for (bool zstd : {false, true}) {
    const std::vector<uint8_t> encoded =
        EncodeBlock(block, Meta(tokens), {BlockEncoding::kQ8, zstd}).value();
    std::mt19937 rng(11);
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<uint8_t> damaged = encoded;
      if (trial % 2 == 0) {
        damaged.resize(rng() % encoded.size());
      } else {
        damaged[rng() % damaged.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
      }
      Result<DecodedBlock> decoded = DecodeBlock(damaged);
      ASSERT_FALSE(decoded.ok()) << "trial " << trial;
      EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
    }
  }
}

// A header whose checksum holds but whose cache type is no ggml type (found by disk_block_fuzz:
// the type reached ggml_type_name, which indexes a table by it) is refused as corrupt.
TEST_F(SnapshotCodecTest, UnknownCacheTypesAreRefused) {
  std::vector<llama_token> tokens;
  const KvBlock block = Export(engine::KvCacheType::kF16, engine::FlashAttention::kOn, &tokens);
  for (int32_t type : {-1, static_cast<int>(GGML_TYPE_COUNT), 0x7fffffff}) {
    BlockMeta meta = Meta(tokens);
    meta.space.cache_type = type;
    const std::vector<uint8_t> encoded = EncodeBlock(block, meta, {BlockEncoding::kF16}).value();
    Result<DecodedBlock> decoded = DecodeBlock(encoded);
    ASSERT_FALSE(decoded.ok()) << type;
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
    EXPECT_NE(decoded.status().message().find("cache type"), std::string::npos);
  }
}

TEST_F(SnapshotCodecTest, IncompatibleBlocksAreRefused) {
  std::vector<llama_token> tokens;
  const KvBlock block = Export(engine::KvCacheType::kF16, engine::FlashAttention::kOn, &tokens);
  const BlockMeta meta = Meta(tokens);
  EXPECT_TRUE(CheckCompatible(meta, block.shape, meta.space, block.shape).ok());
  BlockNamespace other_model = meta.space;
  other_model.model_fingerprint.low ^= 1;
  EXPECT_EQ(CheckCompatible(meta, block.shape, other_model, block.shape).code(),
            StatusCode::kFailedPrecondition);
  BlockNamespace rotated = meta.space;
  rotated.rotated = true;
  EXPECT_FALSE(CheckCompatible(meta, block.shape, rotated, block.shape).ok());
  SnapshotShape transposed = block.shape;
  transposed.v_trans = !transposed.v_trans;
  EXPECT_FALSE(CheckCompatible(meta, block.shape, meta.space, transposed).ok());
  SnapshotShape fewer = block.shape;
  fewer.layers.pop_back();
  Status status = CheckCompatible(meta, block.shape, meta.space, fewer);
  EXPECT_NE(status.message().find("4 layers, model has 3"), std::string::npos) << status.message();
}

TEST(ByteShuffleTest, RoundTripsAnyWidth) {
  std::vector<uint8_t> data(1001);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  for (size_t width : {1, 2, 4, 3}) {
    EXPECT_EQ(ByteUnshuffle(ByteShuffle(data, width), width), data) << width;
  }
  EXPECT_EQ(ByteShuffle(std::vector<uint8_t>{1, 2, 3, 4}, 2), (std::vector<uint8_t>{1, 3, 2, 4}));
}

}  // namespace
}  // namespace kvault::kv
