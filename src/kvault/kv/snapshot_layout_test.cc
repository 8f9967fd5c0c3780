// The snapshot layout against real llama.cpp exports (tiny model; q05 once): every cache type
// and both V layouts. These tests pin the byte layout kvault depends on: a llama.cpp update
// that changes it fails here first.
#include "kvault/kv/snapshot_layout.h"

#include <cstring>
#include <filesystem>
#include <random>

#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/model_maker.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::kv {
namespace {

using engine::FlashAttention;
using engine::KvCacheType;

struct Variant {
  KvCacheType cache_type;
  FlashAttention flash_attention;
};

std::string VariantName(const Variant& v) {
  return std::string(engine::KvCacheTypeName(v.cache_type)) +
         (v.flash_attention == FlashAttention::kOn ? "_fa" : "_nofa");
}

class SnapshotLayoutTest : public ::testing::TestWithParam<Variant> {
 protected:
  static void SetUpTestSuite() {
    model_ = engine::Model::Load({.path = testing::TestModelPath()}).value().release();
  }
  static void TearDownTestSuite() { delete model_; }

  std::unique_ptr<engine::Context> NewContext() {
    engine::ContextParams params;
    params.n_ctx = 512;
    params.n_seq_max = 4;
    params.n_threads = 2;
    params.cache_type = GetParam().cache_type;
    params.flash_attention = GetParam().flash_attention;
    Result<std::unique_ptr<engine::Context>> context = engine::Context::Create(*model_, params);
    EXPECT_TRUE(context.ok()) << context.status().ToString();
    return std::move(context).value();
  }

  std::vector<llama_token> Prompt() {
    std::string text;
    for (int i = 0; i < 12; ++i)
      text += "The river runs past stone number " + std::to_string(i) + ". ";
    return engine::Tokenizer(*model_).Tokenize(text).value();
  }

  static void Decode(engine::Context& context, llama_seq_id seq, llama_pos pos,
                     std::span<const llama_token> tokens) {
    engine::BatchDecoder decoder(&context);
    const engine::SequenceChunk chunk{seq, pos, tokens, true};
    ASSERT_TRUE(decoder.Decode({&chunk, 1}).ok());
  }

  static std::vector<float> NextLogits(engine::Context& context, llama_seq_id seq, llama_pos pos,
                                       llama_token token) {
    engine::BatchDecoder decoder(&context);
    const engine::SequenceChunk chunk{seq, pos, {&token, 1}, true};
    EXPECT_TRUE(decoder.Decode({&chunk, 1}).ok());
    std::span<const float> logits = context.Logits(decoder.OutputIndex(0));
    return {logits.begin(), logits.end()};
  }

  static engine::Model* model_;
};

engine::Model* SnapshotLayoutTest::model_ = nullptr;

TEST_P(SnapshotLayoutTest, SizeAndFieldsMatchThePinnedLayout) {
  std::unique_ptr<engine::Context> context = NewContext();
  const std::vector<llama_token> prompt = Prompt();
  Decode(*context, 0, 0, prompt);
  const std::vector<uint8_t> bytes = context->ExportSequence(0).value();
  Result<KvBlock> block = ParseSnapshot(bytes);
  ASSERT_TRUE(block.ok()) << block.status().ToString();
  const uint64_t n = prompt.size();
  EXPECT_EQ(block->n_tokens, n);
  EXPECT_EQ(block->first_pos, 0);
  ASSERT_EQ(block->shape.layers.size(), 4u);
  // 24 + 12 C + n_layer (24 + C (K row + V row)), for one stream.
  EXPECT_EQ(bytes.size(), 24 + 12 * n + 4 * (24 + block->shape.BytesPerCell() / 4 * n));
  uint32_t magic = 0;
  std::memcpy(&magic, bytes.data(), 4);
  EXPECT_EQ(magic, kLlamaStateMagic);
  // K rows: 2 KV heads x 64 dims per cell.
  const size_t k_row = GetParam().cache_type == KvCacheType::kF16    ? 256
                       : GetParam().cache_type == KvCacheType::kF32  ? 512
                       : GetParam().cache_type == KvCacheType::kQ8_0 ? 136
                                                                     : 72;
  EXPECT_EQ(block->shape.layers[0].k_row_size, k_row);
  EXPECT_EQ(block->shape.v_trans, GetParam().flash_attention == FlashAttention::kOff);
}

TEST_P(SnapshotLayoutTest, ParseSerializeGivesTheExportedBytesBack) {
  std::unique_ptr<engine::Context> context = NewContext();
  Decode(*context, 0, 0, Prompt());
  const std::vector<uint8_t> bytes = context->ExportSequence(0).value();
  KvBlock block = ParseSnapshot(bytes).value();
  EXPECT_EQ(SerializeSnapshot(block, 0), bytes);
}

TEST_P(SnapshotLayoutTest, SliceJoinImportGivesBitIdenticalBytesAndLogits) {
  const std::vector<llama_token> prompt = Prompt();
  const llama_token next = prompt[3];
  const auto n = static_cast<llama_pos>(prompt.size());
  std::unique_ptr<engine::Context> reference = NewContext();
  Decode(*reference, 0, 0, prompt);
  const std::vector<float> expected = NextLogits(*reference, 0, n, next);

  std::unique_ptr<engine::Context> context = NewContext();
  Decode(*context, 0, 0, prompt);
  const std::vector<uint8_t> exported = context->ExportSequence(0).value();
  const KvBlock whole = ParseSnapshot(exported).value();
  std::vector<KvBlock> pieces;
  for (llama_pos p = 0; p < n; p += 16) {
    pieces.push_back(SliceBlock(whole, p, std::min<uint32_t>(16, n - p)).value());
  }
  const KvBlock joined = JoinBlocks(pieces).value();
  EXPECT_EQ(joined.data, whole.data);
  const std::vector<uint8_t> bytes = SerializeSnapshot(joined, 3);
  context->ClearAll();
  ASSERT_TRUE(context->ImportSequence(3, bytes).ok());
  EXPECT_EQ(context->SequenceLength(3), n);
  const std::vector<float> actual = NextLogits(*context, 3, n, next);
  ASSERT_EQ(actual.size(), expected.size());
  EXPECT_EQ(std::memcmp(actual.data(), expected.data(), expected.size() * sizeof(float)), 0);
}

// Cutting a state to positions < m and importing it equals a run cut back with seq_rm.
TEST_P(SnapshotLayoutTest, PrefixSliceEqualsARunCutBackWithSeqRm) {
  const std::vector<llama_token> prompt = Prompt();
  const llama_pos m = 20;
  std::unique_ptr<engine::Context> cut = NewContext();
  Decode(*cut, 0, 0, prompt);
  ASSERT_TRUE(cut->RemoveTokens(0, m, -1).ok());
  const std::vector<uint8_t> expected = cut->ExportSequence(0).value();

  std::unique_ptr<engine::Context> context = NewContext();
  Decode(*context, 0, 0, prompt);
  const KvBlock prefix = SliceBlock(ParseSnapshot(context->ExportSequence(0).value()).value(), 0,
                                    static_cast<uint32_t>(m))
                             .value();
  EXPECT_EQ(SerializeSnapshot(prefix, 0), expected);
}

// The restore path's writer, from blocks of 16 with the last one used only in part, makes
// exactly the bytes of serializing the joined blocks; stopped short, exactly those of the
// shorter prefix (what llama.cpp exports for a run cut back there).
TEST_P(SnapshotLayoutTest, WriterFromBlocksEqualsSerializingTheJoinedPrefix) {
  const std::vector<llama_token> prompt = Prompt();
  std::unique_ptr<engine::Context> context = NewContext();
  Decode(*context, 0, 0, prompt);
  const KvBlock whole = ParseSnapshot(context->ExportSequence(0).value()).value();
  const uint32_t n = whole.n_tokens - 3;  // the last block is cut 3 tokens short
  std::vector<KvBlock> blocks;
  for (uint32_t p = 0; p < whole.n_tokens; p += 16) {
    blocks.push_back(
        SliceBlock(whole, static_cast<llama_pos>(p), std::min<uint32_t>(16, whole.n_tokens - p))
            .value());
  }
  const std::vector<uint8_t> expected =
      SerializeSnapshot(SliceBlock(whole, 0, n).value(), 2, context->n_stream());

  // Writing into a recycled buffer that is larger and holds stale bytes changes nothing.
  SnapshotWriter writer(whole.shape, 0, n, 2, context->n_stream(),
                        std::vector<uint8_t>(expected.size() + 100, 0xAB));
  uint32_t left = n;
  for (const KvBlock& block : blocks) {
    const uint32_t take = std::min(left, block.n_tokens);
    ASSERT_TRUE(writer.Append(block, take).ok());
    left -= take;
  }
  EXPECT_EQ(writer.n_written(), n);
  const std::vector<uint8_t> written = std::move(writer).Finish();
  EXPECT_EQ(written, expected);
  context->ClearAll();
  ASSERT_TRUE(context->ImportSequence(2, written).ok());
  EXPECT_EQ(context->SequenceLength(2), static_cast<llama_pos>(n));

  SnapshotWriter short_writer(whole.shape, 0, n, 0, context->n_stream());
  ASSERT_TRUE(short_writer.Append(blocks[0]).ok());
  ASSERT_TRUE(short_writer.Append(blocks[1], 5).ok());
  EXPECT_EQ(std::move(short_writer).Finish(),
            SerializeSnapshot(SliceBlock(whole, 0, 21).value(), 0, context->n_stream()));
}

TEST_P(SnapshotLayoutTest, WriterRefusesBlocksThatDoNotContinueIt) {
  const std::vector<llama_token> prompt = Prompt();
  std::unique_ptr<engine::Context> context = NewContext();
  Decode(*context, 0, 0, prompt);
  const KvBlock whole = ParseSnapshot(context->ExportSequence(0).value()).value();
  const KvBlock first = SliceBlock(whole, 0, 8).value();
  const KvBlock second = SliceBlock(whole, 8, 8).value();
  SnapshotWriter writer(whole.shape, 0, 12, 0, 1);
  EXPECT_FALSE(writer.Append(second).ok());  // a gap: position 8 before 0
  ASSERT_TRUE(writer.Append(first).ok());
  EXPECT_FALSE(writer.Append(first).ok());      // position 0 again
  EXPECT_FALSE(writer.Append(second).ok());     // 8 tokens where 4 are left
  EXPECT_FALSE(writer.Append(second, 9).ok());  // more than the block has
  KvBlock other_shape = second;
  other_shape.shape.layers.pop_back();
  EXPECT_FALSE(writer.Append(other_shape, 4).ok());
  KvBlock short_data = second;
  short_data.data.resize(short_data.data.size() - 1);
  EXPECT_FALSE(writer.Append(short_data, 4).ok());
  EXPECT_EQ(writer.n_written(), 8u);  // refused appends wrote nothing
  ASSERT_TRUE(writer.Append(second, 4).ok());
  EXPECT_EQ(std::move(writer).Finish(), SerializeSnapshot(SliceBlock(whole, 0, 12).value(), 0));
}

TEST_P(SnapshotLayoutTest, ByteFlipsAndTruncationsNeverCrash) {
  std::unique_ptr<engine::Context> context = NewContext();
  Decode(*context, 0, 0, Prompt());
  const std::vector<uint8_t> bytes = context->ExportSequence(0).value();
  std::mt19937 rng(7);
  int rejected = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<uint8_t> damaged = bytes;
    if (trial % 2 == 0) {
      damaged.resize(rng() % bytes.size());
    } else {
      // Flips in the first 400 bytes hit the header and cell table.
      for (int f = 0; f < 3; ++f)
        damaged[rng() % std::min<size_t>(400, damaged.size())] ^= 1 + rng() % 255;
    }
    Result<KvBlock> parsed = ParseSnapshot(damaged);
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), StatusCode::kCorruption);
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 150);  // every truncation, and most header flips
}

INSTANTIATE_TEST_SUITE_P(
    CacheTypesAndLayouts, SnapshotLayoutTest,
    // llama.cpp keeps a quantized V cache only in the flash-attention layout, so q8_0 and
    // q4_0 have no transposed variant (Context::Create refuses it: see the test below).
    ::testing::Values(Variant{KvCacheType::kF16, FlashAttention::kOn},
                      Variant{KvCacheType::kF16, FlashAttention::kOff},
                      Variant{KvCacheType::kF32, FlashAttention::kOff},
                      Variant{KvCacheType::kQ8_0, FlashAttention::kOn},
                      Variant{KvCacheType::kQ4_0, FlashAttention::kOn}),
    [](const ::testing::TestParamInfo<Variant>& info) { return VariantName(info.param); });

TEST(SnapshotLayoutContextTest, QuantizedCacheWithoutFlashAttentionIsRefused) {
  std::unique_ptr<engine::Model> model =
      engine::Model::Load({.path = testing::TestModelPath()}).value();
  engine::ContextParams params;
  params.n_ctx = 256;
  params.cache_type = KvCacheType::kQ8_0;
  params.flash_attention = FlashAttention::kOff;
  EXPECT_EQ(engine::Context::Create(*model, params).status().code(), StatusCode::kInvalidArgument);
}

TEST(SnapshotLayoutQ05Test, Q05StateRoundTripsBitIdentically) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("kvault_snapshot_q05_" + std::to_string(::getpid()) + ".gguf"))
                               .string();
  engine::MakeModelParams make;
  make.shape = engine::FindModelPreset("q05").value();
  make.name = "q05-test";
  make.vocab_path = engine::DefaultVocabPath("qwen2");
  make.output_path = path;
  make.weight_type = engine::WeightType::kQ8_0;
  ASSERT_TRUE(engine::MakeModel(make).ok());
  std::unique_ptr<engine::Model> model = engine::Model::Load({.path = path}).value();
  engine::ContextParams params;
  params.n_ctx = 256;
  params.n_threads = 2;
  std::unique_ptr<engine::Context> context = engine::Context::Create(*model, params).value();
  const std::vector<llama_token> prompt =
      engine::Tokenizer(*model).Tokenize("A short prompt for the q05 shape, twice over.").value();
  engine::BatchDecoder decoder(context.get());
  const engine::SequenceChunk chunk{0, 0, prompt, true};
  ASSERT_TRUE(decoder.Decode({&chunk, 1}).ok());
  const std::vector<uint8_t> bytes = context->ExportSequence(0).value();
  KvBlock block = ParseSnapshot(bytes).value();
  EXPECT_EQ(block.shape.layers.size(), 24u);
  // 12,300 bytes per token for q05 with an f16 cache: 24 layers x 2 x 256 B + 12.
  EXPECT_EQ(block.shape.BytesPerCell() + 12, 12300u);
  EXPECT_EQ(SerializeSnapshot(
                JoinBlocks(std::vector<KvBlock>{SliceBlock(block, 0, 5).value(),
                                                SliceBlock(block, 5, block.n_tokens - 5).value()})
                    .value(),
                0),
            bytes);
  std::filesystem::remove(path);
}

// Without a unified cache every sequence has a stream of its own; the export then lists every
// stream, all but the sequence's empty. Pinned here like the unified layout.
TEST(SnapshotStreamsTest, PerSequenceStreamsExportOneNonEmptyStreamAndImportBitExactly) {
  std::unique_ptr<engine::Model> model =
      engine::Model::Load({.path = testing::TestModelPath()}).value();
  engine::ContextParams params;
  params.n_ctx = 4 * 256;
  params.n_seq_max = 4;
  params.n_threads = 2;
  params.kv_unified = false;
  std::unique_ptr<engine::Context> context = engine::Context::Create(*model, params).value();
  ASSERT_EQ(context->n_stream(), 4u);
  const std::vector<llama_token> prompt =
      engine::Tokenizer(*model)
          .Tokenize("Streams of their own, one per sequence, four in all.")
          .value();
  const auto n = static_cast<llama_pos>(prompt.size());
  auto decode = [&](llama_seq_id seq, llama_pos pos, std::span<const llama_token> tokens) {
    engine::BatchDecoder decoder(context.get());
    const engine::SequenceChunk chunk{seq, pos, tokens, true};
    EXPECT_TRUE(decoder.Decode({&chunk, 1}).ok());
    std::span<const float> logits = context->Logits(decoder.OutputIndex(0));
    return std::vector<float>(logits.begin(), logits.end());
  };
  decode(2, 0, prompt);
  const std::vector<uint8_t> bytes = context->ExportSequence(2).value();
  uint32_t n_stream = 0;
  std::memcpy(&n_stream, bytes.data() + 8, 4);
  EXPECT_EQ(n_stream, 4u);
  Result<KvBlock> block = ParseSnapshot(bytes);
  ASSERT_TRUE(block.ok()) << block.status().ToString();
  EXPECT_EQ(block->n_tokens, prompt.size());
  EXPECT_EQ(SerializeSnapshot(*block, 2, 4), bytes);
  const llama_token next = prompt[1];
  const std::vector<float> expected = decode(2, n, {&next, 1});
  context->ClearAll();
  ASSERT_TRUE(context->ImportSequence(1, SerializeSnapshot(*block, 1, 4)).ok());
  EXPECT_EQ(context->SequenceLength(1), n);
  const std::vector<float> actual = decode(1, n, {&next, 1});
  ASSERT_EQ(actual.size(), expected.size());
  EXPECT_EQ(std::memcmp(actual.data(), expected.data(), expected.size() * sizeof(float)), 0);
  // A stream count that does not match what follows is refused.
  EXPECT_FALSE(ParseSnapshot(std::span<const uint8_t>(bytes).first(bytes.size() - 1)).ok());
  std::vector<uint8_t> more_streams = bytes;
  const uint32_t five = 5;
  std::memcpy(more_streams.data() + 8, &five, 4);
  EXPECT_FALSE(ParseSnapshot(more_streams).ok());
}

}  // namespace
}  // namespace kvault::kv
