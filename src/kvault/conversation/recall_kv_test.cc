// RecallKv against the real engine (tiny model: qwen2, NEOX RoPE over the whole head, so a
// shift really rotates K): kept history spans come back at other positions bit for bit as
// llama.cpp's own shift of the same cells puts them; what is not kept, evicted or corrupt is
// prefilled instead.
#include "kvault/conversation/recall_kv.h"

#include <cstdlib>
#include <filesystem>
#include <random>

#include "tests/test_env.h"
#include <gtest/gtest.h>

#include "kvault/base/file.h"
#include "kvault/base/status_macros.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/kv/context_blocks.h"

namespace kvault::conversation {
namespace {

constexpr llama_seq_id kHistorySeq = 0;    // where the history was computed
constexpr llama_seq_id kReferenceSeq = 1;  // llama.cpp's own shift of the same cells
constexpr llama_seq_id kTargetSeq = 2;     // a request's sequence
constexpr llama_seq_id kForceSeq = 3;      // one throwaway decode applies pending shifts
constexpr llama_seq_id kScratchSeq = 4;
constexpr llama_seq_id kAccumulatorSeq = 5;
constexpr int kPrefix = 16;  // history position p sits at sequence position kPrefix + p
constexpr int kHistory = 400;

// Bytes of K in a block (kv/snapshot_layout.h: per layer K rows first, then V).
size_t KBytes(const kv::KvBlock& block) {
  size_t bytes = 0;
  for (const kv::LayerShape& layer : block.shape.layers) bytes += layer.k_row_size;
  return bytes * block.n_tokens;
}

std::vector<uint8_t> KPart(const kv::KvBlock& block) {
  return {block.data.begin(), block.data.begin() + static_cast<std::ptrdiff_t>(KBytes(block))};
}

std::vector<uint8_t> VPart(const kv::KvBlock& block) {
  return {block.data.begin() + static_cast<std::ptrdiff_t>(KBytes(block)), block.data.end()};
}

class RecallKvTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = engine::Model::Load({.path = testing::TestModelPath()}).value().release();
  }
  static void TearDownTestSuite() { delete model_; }

  void SetUp() override {
    char pattern[] = "/tmp/recall_kv_test.XXXXXX";
    dir_ = ::mkdtemp(pattern);
    engine::ContextParams params;
    params.n_ctx = 2048;
    params.n_seq_max = 6;
    params.n_threads = 2;
    params.flash_attention = engine::FlashAttention::kOff;
    context_ = engine::Context::Create(*model_, params).value();
    shape_ = kv::ProbeKvShape(*context_, kScratchSeq).value();
    scheduler_ = engine::Scheduler::Start(context_.get(), *model_, {}).value();
    std::mt19937 rng(7);
    for (int i = 0; i < kPrefix + kHistory; ++i) tokens_.push_back(100 + rng() % 5000);
    history_
        .Append(memory::Role::kUser, std::span<const int32_t>(tokens_).subspan(kPrefix, kHistory))
        .value();
  }
  void TearDown() override {
    scheduler_.reset();
    context_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<store::BlockStore> OpenStore(uint64_t ram_budget) {
    store::BlockStoreParams params;
    params.space = kv::BlockNamespaceOf(*context_, shape_, 256);
    params.shape = shape_;
    params.ram_budget_bytes = ram_budget;
    params.disk_dir = dir_ + "/blocks";
    params.tail_write_delay_s = 0;
    return store::BlockStore::Open(params).value();
  }

  // Decodes `tokens` into `seq` from position `first`.
  void Decode(llama_seq_id seq, std::span<const llama_token> tokens, llama_pos first) {
    ASSERT_TRUE(scheduler_
                    ->RunOnEngineThread([&](engine::Context& context) {
                      llama_batch batch =
                          llama_batch_init(static_cast<int32_t>(tokens.size()), 0, 1);
                      for (size_t i = 0; i < tokens.size(); ++i) {
                        batch.token[i] = tokens[i];
                        batch.pos[i] = first + static_cast<llama_pos>(i);
                        batch.n_seq_id[i] = 1;
                        batch.seq_id[i][0] = seq;
                        batch.logits[i] = i + 1 == tokens.size();
                      }
                      batch.n_tokens = static_cast<int32_t>(tokens.size());
                      Status status = context.Decode(batch);
                      llama_batch_free(batch);
                      return status;
                    })
                    .ok());
  }
  // A throwaway decode: llama.cpp applies pending shifts at the start of the next decode.
  void ApplyShifts() {
    const llama_token one = 42;
    Decode(kForceSeq, {&one, 1}, 0);
    ASSERT_TRUE(scheduler_
                    ->RunOnEngineThread([](engine::Context& context) {
                      context.ClearSequence(kForceSeq);
                      return Status::Ok();
                    })
                    .ok());
  }
  // What the scheduler does when the prompt reaches each range.
  bool Put(RecallKv::Materialized& done) {
    bool all = true;
    EXPECT_TRUE(scheduler_
                    ->RunOnEngineThread([&](engine::Context& context) {
                      for (engine::HeldRange& range : done.held) all = range.put(context) && all;
                      return Status::Ok();
                    })
                    .ok());
    return all;
  }
  Result<kv::KvBlock> Export(llama_seq_id seq) {
    std::vector<uint8_t> state;
    KV_RETURN_IF_ERROR(scheduler_->RunOnEngineThread([&](engine::Context& context) {
      KV_ASSIGN_OR_RETURN(state, context.ExportSequence(seq));
      return Status::Ok();
    }));
    return kv::ParseSnapshot(state);
  }
  // Seq 0 computes the history after kPrefix other tokens; its spans are kept.
  kv::KvBlock ComputeAndKeep(RecallKv& recall) {
    Decode(kHistorySeq, tokens_, 0);
    kv::KvBlock state = Export(kHistorySeq).value();
    recall.Keep(state, tokens_, {.first_pos = 0, .offset = kPrefix, .n_tokens = kHistory}, {},
                "conversation");
    return state;
  }
  void Clear(llama_seq_id seq) {
    ASSERT_TRUE(scheduler_
                    ->RunOnEngineThread([seq](engine::Context& context) {
                      context.ClearSequence(seq);
                      return Status::Ok();
                    })
                    .ok());
  }

  static engine::Model* model_;
  std::string dir_;
  std::unique_ptr<engine::Context> context_;
  kv::SnapshotShape shape_;
  std::unique_ptr<engine::Scheduler> scheduler_;
  std::vector<llama_token> tokens_;  // kPrefix tokens, then the history
  memory::TokenStore history_{1 << 20};
};

engine::Model* RecallKvTest::model_ = nullptr;

TEST_F(RecallKvTest, MaterializedKvIsLlamaCppsOwnShiftBitForBit) {
  std::unique_ptr<store::BlockStore> store = OpenStore(64 << 20);
  // f16 at rest: lossless for an f16 cache, so the bytes can be compared exactly.
  RecallKv recall(store.get(),
                  {.mode = RecallKvMode::kReuse, .codec = {.encoding = kv::BlockEncoding::kF16}},
                  kScratchSeq, 1);
  ASSERT_TRUE(recall.active());
  const kv::KvBlock computed = ComputeAndKeep(recall);
  EXPECT_EQ(recall.stats().kept_spans, 3);  // [0,128), [128,256), [256,384); 384.. is partial
  ASSERT_TRUE(scheduler_
                  ->RunOnEngineThread([](engine::Context& context) {
                    return context.CanShift() ? Status::Ok() : InternalError("tiny cannot shift");
                  })
                  .ok());
  // The same with an accumulator sequence (all chunks of a request rotated at once).
  RecallKv accumulating(
      store.get(), {.mode = RecallKvMode::kReuse, .codec = {.encoding = kv::BlockEncoding::kF16}},
      kScratchSeq, 1, {kAccumulatorSeq});
  // The chunk of history positions [100, 228): parts of two spans, computed at sequence
  // positions [116, 244). Put back earlier (B = 40), where it was (B = 116) and later (300).
  for (const auto& [b_, via] : std::vector<std::pair<llama_pos, RecallKv*>>{{40, &recall},
                                                                            {116, &recall},
                                                                            {300, &recall},
                                                                            {40, &accumulating},
                                                                            {300, &accumulating}}) {
    const llama_pos b = b_;  // (a lambda below cannot capture a structured binding)
    SCOPED_TRACE("B = " + std::to_string(b) + (via == &recall ? "" : ", accumulator"));
    Clear(kTargetSeq);
    Clear(kReferenceSeq);
    const std::vector<llama_token> prefix(tokens_.rbegin(), tokens_.rbegin() + b);
    Decode(kTargetSeq, prefix, 0);
    const kv::KvBlock prefix_before = Export(kTargetSeq).value();
    Result<RecallKv::Materialized> done = via->Materialize(
        kTargetSeq, static_cast<size_t>(b), std::vector<memory::HistoryRun>{{100, b, 128}},
        history_, {}, "conversation");
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    EXPECT_EQ(done->counts->chunks_materialized, 0);  // not before it is put
    EXPECT_EQ(done->counts->tokens_prefilled, 128);
    ASSERT_TRUE(Put(*done));
    EXPECT_EQ(done->counts->chunks_materialized, 1);
    EXPECT_EQ(done->counts->tokens_materialized, 128);
    EXPECT_EQ(done->counts->tokens_prefilled, 0);
    ASSERT_EQ(done->held.size(), 1u);
    EXPECT_EQ(done->held[0].offset, 0u);
    EXPECT_EQ(done->held[0].n, 128u);
    if (b != 116) {
      // Pinned: the shift is lazy, so an export now would show new positions with old K.
      Result<kv::KvBlock> early = Export(kTargetSeq);
      EXPECT_EQ(early.status().code(), StatusCode::kFailedPrecondition);
    }
    ApplyShifts();
    const kv::KvBlock target = Export(kTargetSeq).value();
    ASSERT_EQ(target.first_pos, 0);
    ASSERT_EQ(target.n_tokens, static_cast<uint32_t>(b + 128));
    const kv::KvBlock materialized = kv::SliceBlock(target, b, 128).value();

    // llama.cpp's own shift of the same cells: imported where they were computed, moved by
    // llama_memory_seq_add, applied by a decode.
    const kv::KvBlock original = kv::SliceBlock(computed, kPrefix + 100, 128).value();
    ASSERT_TRUE(scheduler_
                    ->RunOnEngineThread([&](engine::Context& context) {
                      KV_RETURN_IF_ERROR(context.ImportSequence(
                          kReferenceSeq, kv::SerializeSnapshot(original, kReferenceSeq)));
                      llama_memory_seq_add(llama_get_memory(context.raw()), kReferenceSeq,
                                           original.first_pos, original.first_pos + 128,
                                           b - original.first_pos);
                      return Status::Ok();
                    })
                    .ok());
    ApplyShifts();
    const kv::KvBlock reference = Export(kReferenceSeq).value();
    ASSERT_EQ(reference.first_pos, b);
    ASSERT_EQ(reference.n_tokens, 128u);
    EXPECT_TRUE(materialized.data == reference.data) << "materialized KV differs from llama.cpp's";
    EXPECT_TRUE(VPart(materialized) == VPart(original)) << "V changed";
    if (b == 116) {
      EXPECT_TRUE(KPart(materialized) == KPart(original)) << "K changed without a move";
    } else {
      EXPECT_FALSE(KPart(materialized) == KPart(original)) << "K was not re-rotated";
    }
    // The request's own prefix is untouched (cells of shift 0 come out of the rope pass
    // unchanged).
    EXPECT_TRUE(kv::SliceBlock(target, 0, static_cast<uint32_t>(b)).value().data ==
                prefix_before.data);
  }
}

TEST_F(RecallKvTest, ChunksWithoutKeptKvArePrefilledAndCounted) {
  std::unique_ptr<store::BlockStore> store = OpenStore(64 << 20);
  RecallKv recall(store.get(), {.mode = RecallKvMode::kReuse}, kScratchSeq, 1);
  ComputeAndKeep(recall);
  const std::vector<llama_token> prefix(tokens_.begin(), tokens_.begin() + 50);
  Decode(kTargetSeq, prefix, 0);
  // [300, 400) reaches into the partial span from 384, which is never kept; [10, 60) is
  // covered by span 0.
  const std::vector<memory::HistoryRun> runs = {{10, 50, 50}, {300, 120, 100}};
  RecallKv::Materialized done =
      recall.Materialize(kTargetSeq, 50, runs, history_, {}, "conversation").value();
  ASSERT_TRUE(Put(done));
  EXPECT_EQ(done.counts->chunks_materialized, 1);
  EXPECT_EQ(done.counts->chunks_prefilled, 1);
  EXPECT_EQ(done.counts->spans_missing, 1);
  EXPECT_EQ(done.counts->tokens_materialized, 50);
  EXPECT_EQ(done.counts->tokens_prefilled, 100);
  ASSERT_EQ(done.held.size(), 1u);
  EXPECT_EQ(done.held[0].offset, 0u);
  // The sequence holds the prefix and the materialized chunk only: nothing of the other.
  ApplyShifts();
  EXPECT_EQ(Export(kTargetSeq).value().n_tokens, 100u);

  // Blend: the first quarter of each chunk is prefilled, the rest put back.
  Clear(kTargetSeq);
  Decode(kTargetSeq, prefix, 0);
  RecallKv blend(store.get(), {.mode = RecallKvMode::kBlend, .blend_fraction = 0.25}, kScratchSeq,
                 1);
  done = blend
             .Materialize(kTargetSeq, 50, std::vector<memory::HistoryRun>{{0, 50, 128}}, history_,
                          {}, "conversation")
             .value();
  ASSERT_TRUE(Put(done));
  EXPECT_EQ(done.counts->tokens_materialized, 96);
  EXPECT_EQ(done.counts->tokens_prefilled, 32);
  ASSERT_EQ(done.held.size(), 1u);
  EXPECT_EQ(done.held[0].offset, 32u);
  EXPECT_EQ(done.held[0].n, 96u);

  // Off, or a cache of one stream per sequence: nothing is put back.
  RecallKv off(store.get(), {.mode = RecallKvMode::kOff}, kScratchSeq, 1);
  done = off.Materialize(kTargetSeq, 50, runs, history_, {}, "conversation").value();
  EXPECT_TRUE(done.held.empty());
  EXPECT_EQ(done.counts->tokens_prefilled, 150);
  EXPECT_FALSE(done.counts->refused.empty());
  RecallKv streams(store.get(), {.mode = RecallKvMode::kReuse}, kScratchSeq, 5);
  EXPECT_FALSE(streams.active());
  done = streams.Materialize(kTargetSeq, 50, runs, history_, {}, "conversation").value();
  EXPECT_TRUE(done.held.empty());
  EXPECT_NE(done.counts->refused.find("--kv-unified"), std::string::npos);

  // Evicted: the store lost every span.
  store->Clear();
  done = recall.Materialize(kTargetSeq, 50, runs, history_, {}, "conversation").value();
  EXPECT_TRUE(done.held.empty());
  EXPECT_EQ(done.counts->chunks_prefilled, 2);
  EXPECT_EQ(done.counts->spans_missing, 2);
  recall.Record(*done.counts);
  EXPECT_EQ(recall.stats().totals.chunks_prefilled, 2);
  EXPECT_EQ(recall.stats().requests, 1);
}

TEST_F(RecallKvTest, CorruptKeptKvIsDroppedAndPrefilled) {
  // A RAM tier too small to hold a span: each is read back from its file.
  std::unique_ptr<store::BlockStore> store = OpenStore(1);
  RecallKv recall(store.get(), {.mode = RecallKvMode::kReuse}, kScratchSeq, 1);
  ComputeAndKeep(recall);
  store->Flush();
  int corrupted = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_ + "/blocks")) {
    if (entry.path().extension() != ".kvb") continue;
    std::vector<uint8_t> bytes = ReadFileToBytes(entry.path().string()).value();
    bytes[bytes.size() / 2] ^= 0x5a;
    ASSERT_TRUE(WriteFileAtomic(entry.path().string(), std::span<const uint8_t>(bytes)).ok());
    ++corrupted;
  }
  ASSERT_EQ(corrupted, 3);
  const std::vector<llama_token> prefix(tokens_.begin(), tokens_.begin() + 50);
  Decode(kTargetSeq, prefix, 0);
  RecallKv::Materialized done =
      recall
          .Materialize(kTargetSeq, 50, std::vector<memory::HistoryRun>{{0, 50, 128}}, history_, {},
                       "conversation")
          .value();
  EXPECT_TRUE(done.held.empty());
  EXPECT_EQ(done.counts->chunks_prefilled, 1);
  EXPECT_EQ(done.counts->spans_failed, 1);
  EXPECT_EQ(store->stats().corrupt_blocks, 1);
  // Dropped, so the next recall does not fail on it again: it is simply not kept.
  done = recall
             .Materialize(kTargetSeq, 50, std::vector<memory::HistoryRun>{{0, 50, 128}}, history_,
                          {}, "conversation")
             .value();
  EXPECT_EQ(done.counts->spans_missing, 1);
  EXPECT_EQ(done.counts->spans_failed, 0);
}

}  // namespace
}  // namespace kvault::conversation
