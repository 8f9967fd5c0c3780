// The CPU side of restoring a prefix from the RAM tier, in isolation (Google Benchmark): the
// blocks of a 2,224-token q05 conversation (f16 cache: 24 layers, K and V rows of 256 bytes;
// 8 full blocks of 256 and 176 tokens of a ninth, 27 MB) turned into the bytes llama.cpp
// imports, the way kvault did before (slice the partial block, JoinBlocks, SerializeSnapshot)
// and the way it does now (SnapshotWriter), into a fresh buffer or into a recycled one; and
// one block decoded into a fresh or a recycled buffer.
//
// In the server, restores of 2,000 tokens took 25-240 ms where the copies alone take ~8 ms: the
// allocator had returned those pages to the kernel between requests, and touching them again
// costs a page fault per 4 KiB. To show that deterministically, main() fixes glibc's mmap
// threshold at 1 MiB before anything runs: every buffer over 1 MiB then comes fresh from the
// kernel and goes back on free (glibc does so for anything over 32 MiB regardless). With its
// default, adaptive threshold, whether a buffer is fresh depends on what ran before (one
// benchmark's free heap serves the next), and the results depend on the order.
//
//   build/bench/restore_path_bench
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
#include <malloc.h>

#include "kvault/base/check.h"
#include "kvault/kv/snapshot_codec.h"
#include "kvault/kv/snapshot_layout.h"

namespace kvault::kv {
namespace {

constexpr uint32_t kBlockTokens = 256;
constexpr uint32_t kFullBlocks = 8;
constexpr uint32_t kTailTokens = 176;
constexpr uint32_t kTotalTokens = kFullBlocks * kBlockTokens + kTailTokens;

SnapshotShape Q05Shape() {
  SnapshotShape shape;
  shape.layers.assign(24,
                      LayerShape{.k_type = 1, .k_row_size = 256, .v_type = 1, .v_row_size = 256});
  return shape;
}

// The fetched blocks: random bytes (the copies do not look at them).
const std::vector<KvBlock>& Blocks() {
  static const std::vector<KvBlock> blocks = [] {
    std::mt19937 rng(7);
    std::vector<KvBlock> out;
    for (uint32_t b = 0; b <= kFullBlocks; ++b) {
      KvBlock block;
      block.first_pos = static_cast<llama_pos>(b * kBlockTokens);
      block.n_tokens = kBlockTokens;
      block.shape = Q05Shape();
      block.data.resize(block.ExpectedDataSize());
      for (uint8_t& byte : block.data) byte = static_cast<uint8_t>(rng());
      out.push_back(std::move(block));
    }
    return out;
  }();
  return blocks;
}

uint32_t TokensUsed(size_t b) { return b < kFullBlocks ? kBlockTokens : kTailTokens; }

// The old path as it ran after the fetch: the decoded blocks were moved in, the partial last
// one sliced (a fresh copy), then joined and serialized (two more). Decoding is not timed
// here, in either path: BM_Decode* time it.
void BM_JoinThenSerialize(benchmark::State& state) {
  const std::vector<KvBlock>& blocks = Blocks();
  std::vector<KvBlock> used(blocks.begin(), blocks.end());
  for (auto _ : state) {
    used.back() = SliceBlock(blocks.back(), blocks.back().first_pos, kTailTokens).value();
    Result<KvBlock> joined = JoinBlocks(used);
    std::vector<uint8_t> bytes = SerializeSnapshot(*joined, 1, 4);
    benchmark::DoNotOptimize(bytes.data());
  }
  state.SetBytesProcessed(state.iterations() * Q05Shape().BytesPerCell() * kTotalTokens);
}

void WriteAll(std::vector<uint8_t>* buffer) {
  const std::vector<KvBlock>& blocks = Blocks();
  SnapshotWriter writer(Q05Shape(), 0, kTotalTokens, 1, 4, std::move(*buffer));
  for (size_t b = 0; b < blocks.size(); ++b) {
    const Status appended = writer.Append(blocks[b], TokensUsed(b));
    KV_CHECK(appended.ok(), appended.message());
  }
  *buffer = std::move(writer).Finish();
  benchmark::DoNotOptimize(buffer->data());
}

void BM_WriterFreshBuffer(benchmark::State& state) {
  Blocks();
  for (auto _ : state) {
    std::vector<uint8_t> buffer;
    WriteAll(&buffer);
  }
  state.SetBytesProcessed(state.iterations() * Q05Shape().BytesPerCell() * kTotalTokens);
}

void BM_WriterRecycledBuffer(benchmark::State& state) {
  Blocks();
  std::vector<uint8_t> buffer;
  WriteAll(&buffer);  // the first restore, which maps the pages
  for (auto _ : state) WriteAll(&buffer);
  state.SetBytesProcessed(state.iterations() * Q05Shape().BytesPerCell() * kTotalTokens);
}

const std::vector<uint8_t>& EncodedBlock() {
  static const std::vector<uint8_t> encoded = [] {
    BlockMeta meta;
    meta.tokens.assign(kBlockTokens, 1);
    meta.space.block_size = kBlockTokens;
    meta.name = ComputeBlockName({}, meta.space, meta.tokens);
    return EncodeBlock(Blocks()[0], meta, {}).value();
  }();
  return encoded;
}

void BM_DecodeFreshBuffer(benchmark::State& state) {
  const std::vector<uint8_t>& encoded = EncodedBlock();
  for (auto _ : state) {
    Result<DecodedBlock> decoded = DecodeBlock(encoded);
    benchmark::DoNotOptimize(decoded->block.data.data());
  }
  state.SetBytesProcessed(state.iterations() * Q05Shape().BytesPerCell() * kBlockTokens);
}

void BM_DecodeRecycledBuffer(benchmark::State& state) {
  const std::vector<uint8_t>& encoded = EncodedBlock();
  DecodedBlock decoded;
  KV_CHECK(DecodeBlockInto(encoded, &decoded).ok(), "decode");
  for (auto _ : state) {
    const Status status = DecodeBlockInto(encoded, &decoded);
    benchmark::DoNotOptimize(status.ok());
  }
  state.SetBytesProcessed(state.iterations() * Q05Shape().BytesPerCell() * kBlockTokens);
}

BENCHMARK(BM_JoinThenSerialize)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WriterFreshBuffer)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WriterRecycledBuffer)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeFreshBuffer)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeRecycledBuffer)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvault::kv

int main(int argc, char** argv) {
  mallopt(M_MMAP_THRESHOLD, 1 << 20);  // fixed: no adaptive threshold, see the top
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
