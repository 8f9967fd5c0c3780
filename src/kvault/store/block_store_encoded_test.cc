// BlockStore's encoded-block methods (ReadEncoded, InsertEncoded: the session files'
// export and import) on synthetic KV, no model: blocks move between two stores bit-exact,
// and a chain that is another namespace's, damaged or out of order adds nothing.
#include <filesystem>
#include <random>

#include <gtest/gtest.h>
#include <unistd.h>

#include "kvault/kv/context_blocks.h"
#include "kvault/store/block_files.h"
#include "kvault/store/block_store.h"

namespace kvault::store {
namespace {

constexpr uint32_t kB = 8;
constexpr int32_t kGgmlF16 = 1;

kv::SnapshotShape Shape() {
  kv::SnapshotShape shape;
  shape.layers.assign(
      2,
      kv::LayerShape{.k_type = kGgmlF16, .k_row_size = 32, .v_type = kGgmlF16, .v_row_size = 32});
  return shape;
}

kv::KvBlock SequenceKv(const std::vector<llama_token>& tokens) {
  kv::KvBlock block;
  block.n_tokens = static_cast<uint32_t>(tokens.size());
  block.shape = Shape();
  for (size_t i = 0; i < block.ExpectedDataSize(); ++i) {
    block.data.push_back(static_cast<uint8_t>(i * 13 + tokens[(i / 32) % tokens.size()]));
  }
  return block;
}

std::vector<llama_token> Tokens(size_t n, uint32_t seed) {
  std::vector<llama_token> tokens(n);
  std::mt19937 rng(seed);
  for (llama_token& t : tokens) t = static_cast<llama_token>(rng() % 1000);
  return tokens;
}

class BlockStoreEncodedTest : public ::testing::Test {
 protected:
  BlockStoreEncodedTest() {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvault_encoded_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  ~BlockStoreEncodedTest() override { std::filesystem::remove_all(dir_); }

  BlockStoreParams Params(uint64_t fingerprint = 7) const {
    BlockStoreParams params;
    params.space.block_size = kB;
    params.space.model_fingerprint = Hash128{fingerprint, 9};
    params.shape = Shape();
    params.eviction = "lru";
    return params;
  }
  static std::unique_ptr<BlockStore> Open(const BlockStoreParams& params) {
    return BlockStore::Open(params).value();
  }
  // A store holding `tokens` (2.5 blocks), and their names.
  std::unique_ptr<BlockStore> Source(const std::vector<llama_token>& tokens,
                                     std::vector<BlockName>* names) const {
    auto store = Open(Params());
    EXPECT_TRUE(store->Store(tokens, SequenceKv(tokens), {}).ok());
    *names = store->Pin(tokens, 0);
    return store;
  }

  std::filesystem::path dir_;
};

TEST_F(BlockStoreEncodedTest, BlocksMoveToAnotherStoreBitExact) {
  const std::vector<llama_token> tokens = Tokens(2 * kB + 4, 1);
  std::vector<BlockName> names;
  auto source = Source(tokens, &names);
  ASSERT_EQ(names.size(), 3u);
  const std::vector<BlockBytes> encoded = source->ReadEncoded(names);
  ASSERT_EQ(encoded.size(), 3u);
  EXPECT_EQ(source->stats().ram.hits, 0);  // an export records no use

  auto target = Open(Params());
  Result<size_t> inserted = target->InsertEncoded(encoded);
  ASSERT_TRUE(inserted.ok()) << inserted.status().ToString();
  EXPECT_EQ(*inserted, tokens.size());
  const Lookup lookup = target->Find(tokens);
  EXPECT_EQ(lookup.n_tokens, tokens.size());
  const Fetched fetched = target->Fetch(lookup);
  ASSERT_TRUE(fetched.error.ok()) << fetched.error.ToString();
  EXPECT_EQ(kv::JoinBlocks(fetched.blocks).value().data, SequenceKv(tokens).data);
  // Again: known blocks only record a use.
  EXPECT_TRUE(target->InsertEncoded(encoded).ok());
  EXPECT_EQ(target->stats().stored_blocks, 3);
}

TEST_F(BlockStoreEncodedTest, ReadingStopsAtTheFirstMissingBlock) {
  const std::vector<llama_token> tokens = Tokens(2 * kB + 4, 2);
  std::vector<BlockName> names;
  auto source = Source(tokens, &names);
  std::vector<BlockName> gap = {names[0], BlockName{1, 2}, names[2]};
  EXPECT_EQ(source->ReadEncoded(gap).size(), 1u);
}

TEST_F(BlockStoreEncodedTest, AnotherModelsBlocksAreRefusedAndNothingIsAdded) {
  const std::vector<llama_token> tokens = Tokens(2 * kB, 3);
  std::vector<BlockName> names;
  auto source = Source(tokens, &names);
  auto other = Open(Params(/*fingerprint=*/8));
  Result<size_t> inserted = other->InsertEncoded(source->ReadEncoded(names));
  ASSERT_FALSE(inserted.ok());
  EXPECT_EQ(inserted.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(other->CountNodes(), 0u);
}

TEST_F(BlockStoreEncodedTest, DamagedOrMisorderedChainsAreCorruptAndNothingIsAdded) {
  const std::vector<llama_token> tokens = Tokens(3 * kB, 4);
  std::vector<BlockName> names;
  auto source = Source(tokens, &names);
  std::vector<BlockBytes> encoded = source->ReadEncoded(names);
  auto target = Open(Params());

  std::vector<BlockBytes> flipped = encoded;
  std::vector<uint8_t> bytes = *flipped[2];
  bytes[bytes.size() / 2] ^= 1;
  flipped[2] = std::make_shared<const std::vector<uint8_t>>(bytes);
  std::vector<BlockBytes> swapped = {encoded[1], encoded[0], encoded[2]};
  std::vector<BlockBytes> gap = {encoded[0], encoded[2]};
  for (const auto& chain : {flipped, swapped, gap}) {
    Result<size_t> inserted = target->InsertEncoded(chain);
    ASSERT_FALSE(inserted.ok());
    EXPECT_EQ(inserted.status().code(), StatusCode::kCorruption) << inserted.status().ToString();
    EXPECT_EQ(target->CountNodes(), 0u);  // validated before the first insert
  }
  // A chain under another partition root is not this one's.
  EXPECT_FALSE(target->InsertEncoded(encoded, kv::PartitionRoot("key-1")).ok());
}

TEST_F(BlockStoreEncodedTest, BlockFilesWrittenOfflineAreFoundByTheNextStore) {
  const std::vector<llama_token> tokens = Tokens(2 * kB + 3, 5);
  std::vector<BlockName> names;
  auto source = Source(tokens, &names);
  const std::vector<BlockBytes> encoded = source->ReadEncoded(names);
  ASSERT_TRUE(WriteBlockFiles(dir_.string(), encoded).ok());
  const std::vector<BlockBytes> read = ReadBlockFiles(dir_.string(), names);
  ASSERT_EQ(read.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(*read[i], *encoded[i]);
  // The namespace folder the offline writer chose is the one a server's store opens.
  BlockStoreParams params = Params();
  params.disk_dir = (dir_ / kv::BlockNamespaceDigest(params.space)).string();  // stack.cc's
  auto reopened = Open(params);
  EXPECT_EQ(reopened->Find(tokens).n_tokens, tokens.size());
  // A damaged block writes nothing.
  std::vector<uint8_t> bytes = *encoded[0];
  bytes[bytes.size() - 1] ^= 1;
  const std::filesystem::path empty = dir_ / "empty";
  const std::vector<BlockBytes> damaged = {std::make_shared<const std::vector<uint8_t>>(bytes)};
  EXPECT_FALSE(WriteBlockFiles(empty.string(), damaged).ok());
  EXPECT_FALSE(std::filesystem::exists(empty));
}

}  // namespace
}  // namespace kvault::store
