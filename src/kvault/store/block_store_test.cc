// BlockStore on synthetic KV (real codec, real files in a temp folder, no model): placement,
// budgets, sharing, persistence across reopen, and corruption handling. The same store is
// exercised end to end on real llama.cpp state by tests/integration.
#include "kvault/store/block_store.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <ggml.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "kvault/store/redis_client.h"
#include "kvault/store/remote_tier.h"
#include "kvault/store/tier.h"
#include "kvault/testing/redis_server.h"

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

// KV for a sequence: each row's bytes depend only on (layer, K or V, position, token), so
// equal prefixes have equal KV, as they do in a model.
kv::KvBlock SequenceKv(const std::vector<llama_token>& tokens) {
  kv::KvBlock block;
  block.first_pos = 0;
  block.n_tokens = static_cast<uint32_t>(tokens.size());
  block.shape = Shape();
  block.data.reserve(block.ExpectedDataSize());
  for (int kind = 0; kind < 2; ++kind) {  // K rows of every layer, then V rows
    for (size_t layer = 0; layer < block.shape.layers.size(); ++layer) {
      for (size_t pos = 0; pos < tokens.size(); ++pos) {
        for (size_t byte = 0; byte < 32; ++byte) {
          block.data.push_back(
              static_cast<uint8_t>(kind * 101 + layer * 37 + pos * 13 + tokens[pos] * 7 + byte));
        }
      }
    }
  }
  return block;
}

std::vector<llama_token> Tokens(size_t n, llama_token seed) {
  std::vector<llama_token> tokens(n);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  for (llama_token& t : tokens) t = static_cast<llama_token>(rng() % 1000);
  return tokens;
}

class BlockStoreTest : public ::testing::Test {
 protected:
  BlockStoreTest() {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvault_store_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  ~BlockStoreTest() override { std::filesystem::remove_all(dir_); }

  BlockStoreParams Params(bool with_disk) {
    BlockStoreParams params;
    params.space.block_size = kB;
    params.space.model_fingerprint = Hash128{7, 9};
    params.shape = Shape();
    params.eviction = "lru";
    params.disk_reserve_bytes = 0;
    if (with_disk) params.disk_dir = dir_.string();
    return params;
  }

  static std::unique_ptr<BlockStore> Open(const BlockStoreParams& params) {
    Result<std::unique_ptr<BlockStore>> store = BlockStore::Open(params);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return std::move(store).value();
  }

  static StoreResult StoreAll(BlockStore& store, const std::vector<llama_token>& tokens,
                              BlockName previous_tail = {}) {
    Result<StoreResult> result = store.Store(tokens, SequenceKv(tokens), previous_tail);
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    return *result;
  }

  // Fetches the longest cached prefix of `tokens` and checks its bytes against the original.
  static size_t FetchAndVerify(BlockStore& store, const std::vector<llama_token>& tokens) {
    const Lookup lookup = store.Find(tokens);
    const Fetched fetched = store.Fetch(lookup);
    if (fetched.blocks.empty()) return 0;
    const kv::KvBlock joined = kv::JoinBlocks(fetched.blocks).value();
    const std::vector<llama_token> prefix(tokens.begin(), tokens.begin() + joined.n_tokens);
    const kv::KvBlock expected =
        kv::SliceBlock(SequenceKv(tokens), 0, static_cast<uint32_t>(prefix.size())).value();
    EXPECT_EQ(joined.data, expected.data);
    return fetched.n_tokens;
  }

  std::filesystem::path dir_;
};

TEST_F(BlockStoreTest, StoredSequenceComesBackBitExactToTheToken) {
  auto store = Open(Params(false));
  const std::vector<llama_token> tokens = Tokens(3 * kB + 3, 1);
  const StoreResult stored = StoreAll(*store, tokens);
  EXPECT_EQ(stored.n_new_blocks, 4);
  EXPECT_EQ(stored.n_tokens, tokens.size());
  EXPECT_FALSE(stored.tail == BlockName{});
  EXPECT_EQ(FetchAndVerify(*store, tokens), tokens.size());
  // A prompt that diverges inside the second block reuses its first tokens.
  std::vector<llama_token> diverging(tokens.begin(), tokens.begin() + kB + 5);
  diverging.push_back(99999);
  EXPECT_EQ(store->Find(diverging).n_tokens, kB + 5);
  EXPECT_EQ(store->stats().ram.hits, 4);
}

TEST_F(BlockStoreTest, SequencesSharingAPrefixShareItsBlocks) {
  auto store = Open(Params(false));
  std::vector<llama_token> system = Tokens(4 * kB, 2);
  for (int i = 0; i < 8; ++i) {
    std::vector<llama_token> conversation = system;
    const std::vector<llama_token> own = Tokens(kB, 100 + i);
    conversation.insert(conversation.end(), own.begin(), own.end());
    const StoreResult stored = StoreAll(*store, conversation);
    EXPECT_EQ(stored.n_known_blocks, i == 0 ? 0 : 4);
  }
  // 4 shared blocks + 8 own ones, not 8 x 5.
  EXPECT_EQ(store->stats().stored_blocks, 12);
  EXPECT_EQ(store->stats().ram.blocks, 12);
}

TEST_F(BlockStoreTest, ANewTailReplacesTheConversationsOldOne) {
  auto store = Open(Params(false));
  std::vector<llama_token> tokens = Tokens(kB + 3, 3);
  const StoreResult first = StoreAll(*store, tokens);
  const std::vector<llama_token> more = Tokens(2, 4);
  tokens.insert(tokens.end(), more.begin(), more.end());
  const StoreResult second = StoreAll(*store, tokens, first.tail);
  EXPECT_FALSE(first.tail == second.tail);
  EXPECT_EQ(store->stats().tree_nodes, 2);  // the full block and the new tail only
  EXPECT_EQ(FetchAndVerify(*store, tokens), tokens.size());
}

TEST_F(BlockStoreTest, RamBudgetEvictsLeastRecentlyUsedWithoutADisk) {
  BlockStoreParams params = Params(false);
  auto probe = Open(params);
  StoreAll(*probe, Tokens(kB, 5));
  const uint64_t block_bytes = static_cast<uint64_t>(probe->stats().ram.bytes);
  params.ram_budget_bytes = 3 * block_bytes;
  auto store = Open(params);
  const std::vector<llama_token> a = Tokens(2 * kB, 6), b = Tokens(2 * kB, 7);
  StoreAll(*store, a);
  StoreAll(*store, b);  // 4 blocks > budget of 3: a's leaf (least recent) goes
  EXPECT_LE(static_cast<uint64_t>(store->stats().ram.bytes), params.ram_budget_bytes);
  EXPECT_EQ(store->Find(a).n_tokens, kB);
  EXPECT_EQ(store->Find(b).n_tokens, 2 * kB);
  EXPECT_EQ(store->stats().ram.evictions, 1);
}

TEST_F(BlockStoreTest, PinnedBlocksAreNeverEvicted) {
  BlockStoreParams params = Params(false);
  params.ram_budget_bytes = 1;  // nothing unpinned survives
  auto store = Open(params);
  const std::vector<llama_token> tokens = Tokens(2 * kB, 8);
  StoreAll(*store, tokens);
  EXPECT_EQ(store->Find(tokens).n_tokens, 0u);
  params.ram_budget_bytes = 1ull << 30;
  auto pinned = Open(params);
  StoreAll(*pinned, tokens);
  EXPECT_EQ(pinned->Pin(tokens, 1).size(), 2u);
  StoreAll(*pinned, Tokens(2 * kB, 9));
  EXPECT_EQ(pinned->Find(tokens).n_tokens, 2 * kB);
}

TEST_F(BlockStoreTest, ClearBranchDropsAConversationsOwnBlocksOnly) {
  auto store = Open(Params(true));
  const std::vector<llama_token> system = Tokens(2 * kB, 30);
  std::vector<llama_token> a = system, b = system;
  for (llama_token t : Tokens(2 * kB + 3, 31)) a.push_back(t);
  for (llama_token t : Tokens(kB, 32)) b.push_back(t);
  const StoreResult stored_a = StoreAll(*store, a);
  StoreAll(*store, b);
  store->Flush();
  ASSERT_EQ(store->stats().tree_nodes, 6);  // 2 shared + 3 of a + 1 of b
  const Removed removed = store->ClearBranch(stored_a.last);
  EXPECT_EQ(removed.blocks, 3);
  EXPECT_GT(removed.bytes, 0);
  EXPECT_EQ(store->stats().cleared_blocks, 3);
  EXPECT_EQ(store->Find(a).n_tokens, 2 * kB);  // the shared prefix stays
  EXPECT_EQ(FetchAndVerify(*store, b), b.size());
  // Gone from the disk too: a reopened store does not find them.
  store.reset();
  auto reopened = Open(Params(true));
  EXPECT_EQ(reopened->stats().tree_nodes, 3);
}

TEST_F(BlockStoreTest, ClearDropsEverythingOfItsPartitionsButPinnedPrefixes) {
  auto store = Open(Params(true));
  const BlockName mine = kv::PartitionRoot("key-a"), theirs = kv::PartitionRoot("key-b");
  const std::vector<llama_token> pinned = Tokens(2 * kB, 33), loose = Tokens(3 * kB, 34);
  for (const BlockName& root : {mine, theirs}) {
    ASSERT_TRUE(store->Store(pinned, SequenceKv(pinned), {}, true, root).ok());
    ASSERT_TRUE(store->Store(loose, SequenceKv(loose), {}, true, root).ok());
  }
  ASSERT_EQ(store->Pin(pinned, 1, mine).size(), 2u);
  const BlockName partitions[] = {mine};
  const Removed removed = store->Clear(partitions);
  EXPECT_EQ(removed.blocks, 3);  // `loose` of key-a
  EXPECT_EQ(removed.pinned, 1);  // the pinned tail of key-a's `pinned` (its parent stays too)
  EXPECT_EQ(store->Find(loose, mine).n_tokens, 0u);
  EXPECT_EQ(store->Find(pinned, mine).n_tokens, 2 * kB);
  EXPECT_EQ(store->Find(loose, theirs).n_tokens, 3 * kB);
  // No partitions named: all of them.
  EXPECT_EQ(store->Clear().blocks, 5);
  EXPECT_EQ(store->stats().tree_nodes, 2);  // only the pinned prefix is left
  EXPECT_EQ(store->stats().cleared_blocks, 8);
}

TEST_F(BlockStoreTest, TheTtlDropsIdleBlocksAndKeepsUsedAndPinnedOnes) {
  BlockStoreParams params = Params(true);
  params.ttl_s = 0.4;
  auto store = Open(params);
  const std::vector<llama_token> idle = Tokens(2 * kB, 35), used = Tokens(2 * kB, 36),
                                 pinned = Tokens(kB, 37);
  StoreAll(*store, idle);
  StoreAll(*store, used);
  StoreAll(*store, pinned);
  store->Pin(pinned, 1);
  // The background sweep runs every ttl/4; `used` is touched more often than the TTL.
  for (int i = 0; i < 12; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    store->Fetch(store->Find(used));
  }
  EXPECT_EQ(store->Find(idle).n_tokens, 0u);
  EXPECT_EQ(store->Find(used).n_tokens, used.size());
  EXPECT_EQ(store->Find(pinned).n_tokens, pinned.size());
  EXPECT_EQ(store->stats().expired_blocks, 2);
  // Without a TTL nothing expires however idle.
  store.reset();
  params.ttl_s = 0;
  auto untimed = Open(params);
  EXPECT_EQ(untimed->Expire().blocks, 0);
  EXPECT_EQ(untimed->stats().tree_nodes, 3);
}

TEST_F(BlockStoreTest, RamOverflowDemotesToDiskAndReadsPromoteBack) {
  BlockStoreParams params = Params(true);
  params.ram_budget_bytes = 1;
  auto store = Open(params);
  const std::vector<llama_token> tokens = Tokens(3 * kB, 10);
  StoreAll(*store, tokens);
  store->Flush();
  BlockStoreStats stats = store->stats();
  EXPECT_EQ(stats.ram.blocks, 0);
  EXPECT_EQ(stats.disk.blocks, 3);
  EXPECT_EQ(FetchAndVerify(*store, tokens), tokens.size());
  EXPECT_EQ(store->stats().disk.hits, 3);
}

TEST_F(BlockStoreTest, AReopenedStoreFindsEveryBlockOnDisk) {
  const std::vector<llama_token> a = Tokens(2 * kB + 5, 11), b = Tokens(kB, 12);
  {
    auto store = Open(Params(true));
    StoreAll(*store, a);
    StoreAll(*store, b);
  }  // closing finishes the writes
  auto reopened = Open(Params(true));
  EXPECT_EQ(reopened->stats().recovered_blocks, 4);
  EXPECT_EQ(FetchAndVerify(*reopened, a), a.size());
  EXPECT_EQ(FetchAndVerify(*reopened, b), b.size());
  // Another model's store in the same folder sees nothing of it.
  BlockStoreParams other = Params(true);
  other.space.model_fingerprint = Hash128{1, 1};
  other.disk_dir = (dir_ / "other").string();
  EXPECT_EQ(Open(other)->Find(a).n_tokens, 0u);
}

TEST_F(BlockStoreTest, CorruptAndTruncatedFilesFailCleanlyAndAreDeleted) {
  const std::vector<llama_token> tokens = Tokens(3 * kB, 13);
  std::vector<std::string> files;
  {
    BlockStoreParams params = Params(true);
    auto store = Open(params);
    StoreAll(*store, tokens);
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_)) {
    if (entry.is_regular_file()) files.push_back(entry.path().string());
  }
  ASSERT_EQ(files.size(), 3u);
  // Flip one payload byte of every file: headers still parse, checksums fail on read.
  for (const std::string& file : files) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-20, std::ios::end);
    f.put('\x5a');
  }
  BlockStoreParams params = Params(true);
  params.ram_budget_bytes = 0;
  auto store = Open(params);
  const Fetched fetched = store->Fetch(store->Find(tokens));
  EXPECT_EQ(fetched.error.code(), StatusCode::kCorruption);
  EXPECT_EQ(fetched.n_tokens, 0u);
  EXPECT_EQ(store->stats().corrupt_blocks, 1);
  // The corrupt first block took its subtree out of the tree, so nothing matches any more.
  EXPECT_EQ(store->Find(tokens).n_tokens, 0u);
  for (const std::string& file : files) EXPECT_FALSE(std::filesystem::exists(file)) << file;
  store.reset();

  // A file truncated inside its header is found at start-up and deleted.
  Open(Params(true)).reset();
  {
    auto fresh = Open(Params(true));
    StoreAll(*fresh, tokens);
  }
  ASSERT_TRUE(std::filesystem::exists(files[0]));
  std::filesystem::resize_file(files[0], 10);
  auto again = Open(Params(true));
  EXPECT_EQ(again->stats().corrupt_blocks, 1);
  EXPECT_FALSE(std::filesystem::exists(files[0]));
}

TEST_F(BlockStoreTest, DiskBudgetHoldsAfterWrites) {
  BlockStoreParams params = Params(true);
  auto probe = Open(Params(false));
  StoreAll(*probe, Tokens(kB, 14));
  const uint64_t block_bytes = static_cast<uint64_t>(probe->stats().ram.bytes);
  params.ram_budget_bytes = 0;
  params.disk_budget_bytes = 4 * block_bytes;
  auto store = Open(params);
  for (int i = 0; i < 6; ++i) StoreAll(*store, Tokens(kB, 20 + i));
  store->Flush();
  const BlockStoreStats stats = store->stats();
  EXPECT_LE(static_cast<uint64_t>(stats.disk.bytes), params.disk_budget_bytes);
  EXPECT_GE(stats.disk.evictions, 2);
  EXPECT_EQ(FetchAndVerify(*store, Tokens(kB, 25)), kB);  // the newest survived
}

TEST_F(BlockStoreTest, DiskBudgetHoldsEvenWhenEveryBlockIsAlsoInRam) {
  BlockStoreParams params = Params(true);
  auto probe = Open(Params(false));
  StoreAll(*probe, Tokens(kB, 40));
  const uint64_t block_bytes = static_cast<uint64_t>(probe->stats().ram.bytes);
  params.disk_budget_bytes = 3 * block_bytes;  // RAM budget ample: all blocks stay in RAM
  auto store = Open(params);
  const std::vector<llama_token> tokens = Tokens(8 * kB, 41);
  StoreAll(*store, tokens);
  store->Flush();
  const BlockStoreStats stats = store->stats();
  EXPECT_LE(static_cast<uint64_t>(stats.disk.bytes), params.disk_budget_bytes);
  EXPECT_EQ(stats.ram.blocks, 8);
  // Only disk copies went: the whole sequence still comes back, from RAM.
  EXPECT_EQ(FetchAndVerify(*store, tokens), tokens.size());
  // The disk keeps a prefix of the sequence (what a restart can resume from).
  store.reset();
  BlockStoreParams reopened = Params(true);
  reopened.disk_budget_bytes = params.disk_budget_bytes;
  EXPECT_EQ(Open(reopened)->Find(tokens).n_tokens, 3 * kB);
}

// A full file system, as the disk tier sees it: free space below what it must leave free.
TEST_F(BlockStoreTest, StatsNameTheEncodingActuallyApplied) {
  BlockStoreParams params = Params(false);
  params.codec = {.encoding = kv::BlockEncoding::kQ4, .zstd = true};
  params.space.cache_type = GGML_TYPE_F16;
  EXPECT_EQ(Open(params)->stats().encoding, "q4+zstd");
  // q4 applies to f16 rows only: a q8_0 compute cache's blocks keep their q8_0 rows.
  params.space.cache_type = GGML_TYPE_Q8_0;
  EXPECT_EQ(Open(params)->stats().encoding, "q8_0+zstd");
  params.codec = {};
  EXPECT_EQ(Open(params)->stats().encoding, "q8_0");
}

TEST_F(BlockStoreTest, AFullDiskStopsWritesAndServingGoesOnFromRam) {
  BlockStoreParams params = Params(true);
  params.disk_reserve_bytes = uint64_t{1} << 62;
  auto store = Open(params);
  const std::vector<llama_token> tokens = Tokens(3 * kB, 50);
  StoreAll(*store, tokens);
  store->Flush();
  const BlockStoreStats stats = store->stats();
  EXPECT_TRUE(stats.disk_full);
  EXPECT_GE(stats.writes_skipped, 3);
  EXPECT_EQ(stats.disk.blocks, 0);
  EXPECT_EQ(stats.write_errors, 0);
  EXPECT_EQ(FetchAndVerify(*store, tokens), tokens.size());
  // While full (and until the retry interval passes), nothing more is queued.
  StoreAll(*store, Tokens(2 * kB, 51));
  store->Flush();
  EXPECT_EQ(store->stats().disk.blocks, 0);
  EXPECT_EQ(store->stats().ram.blocks, 5);
}

// --- The remote tier, against a real redis-server --------------------------------------------

TEST(RedisUrlTest, ParsesWhatUsersWriteAndRefusesTheRest) {
  Result<RedisUrl> full = ParseRedisUrl("redis://alice:s3cret@10.0.0.7:6380/2");
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ(full->host, "10.0.0.7");
  EXPECT_EQ(full->port, 6380);
  EXPECT_EQ(full->user, "alice");
  EXPECT_EQ(full->password, "s3cret");
  EXPECT_EQ(full->db, 2);
  EXPECT_EQ(full->Redacted(), "redis://alice:***@10.0.0.7:6380/2");
  Result<RedisUrl> plain = ParseRedisUrl("redis://localhost");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->port, 6379);
  for (const char* bad : {"http://x:1", "redis://", "redis://h:0", "redis://h:70000",
                          "redis://h:1/x", "rediss://h:1"}) {
    EXPECT_FALSE(ParseRedisUrl(bad).ok()) << bad;
  }
}

class RemoteTierTest : public BlockStoreTest {
 protected:
  void SetUp() override {
    if (!testing::RedisServer::Available()) GTEST_SKIP() << "redis-server is not installed";
    ASSERT_TRUE(redis_.Start());
    client_ = std::make_shared<RedisClient>(
        RedisClient::Options{.url = ParseRedisUrl(redis_.url()).value(),
                             .command_timeout = std::chrono::milliseconds(500)});
  }
  // A replica's store: RAM only, sharing the remote tier.
  std::unique_ptr<BlockStore> Replica() {
    BlockStoreParams params = Params(false);
    params.remote = std::make_shared<RemoteTier>(client_, "kvtest", 0);
    return Open(params);
  }
  testing::RedisServer redis_;
  std::shared_ptr<RedisClient> client_;
};

TEST_F(RemoteTierTest, AnotherReplicaFindsAndRestoresTheBlocksBitExact) {
  auto a = Replica();
  auto b = Replica();
  const std::vector<llama_token> tokens = Tokens(3 * kB + 5, 40);
  const StoreResult stored = StoreAll(*a, tokens);
  a->Flush();
  EXPECT_EQ(a->stats().remote.blocks, 4);
  EXPECT_EQ(b->Find(tokens).n_tokens, 0u);
  // Full blocks follow from the tokens; the partial tail needs its name (the journal's).
  EXPECT_EQ(b->Discover(tokens), 3 * kB);
  auto c = Replica();
  EXPECT_EQ(c->Discover(tokens, {}, stored.tail), tokens.size());
  const Lookup lookup = c->Find(tokens);
  EXPECT_EQ(lookup.n_tokens, tokens.size());
  EXPECT_TRUE((lookup.blocks.front().tiers & kv::kTierRemote) != 0);
  EXPECT_EQ(FetchAndVerify(*c, tokens), tokens.size());
  EXPECT_EQ(c->stats().remote.hits, 4);
  // Promoted: the next fetch is served from RAM.
  EXPECT_EQ(FetchAndVerify(*c, tokens), tokens.size());
  EXPECT_EQ(c->stats().ram.hits, 4);
  // Discovering again adds nothing.
  EXPECT_EQ(c->Discover(tokens, {}, stored.tail), 0u);
}

TEST_F(RemoteTierTest, ACorruptRemoteValueIsDroppedAndTheFetchStopsCleanly) {
  auto a = Replica();
  const std::vector<llama_token> tokens = Tokens(2 * kB, 41);
  StoreAll(*a, tokens);
  a->Flush();
  const BlockName first =
      kv::ComputeBlockName({}, Params(false).space, std::span<const llama_token>(tokens).first(kB));
  const std::string key = "kvtest:blk:" + first.ToHex();
  Result<RedisReply> value = client_->Command({"GET", key});
  ASSERT_TRUE(value.ok() && value->type == RedisReply::Type::kString);
  std::string flipped = value->str;
  flipped[flipped.size() / 2] ^= 0x40;
  ASSERT_TRUE(client_->Command({"SET", key, flipped}).ok());
  auto b = Replica();
  ASSERT_EQ(b->Discover(tokens), 2 * kB);
  const Fetched fetched = b->Fetch(b->Find(tokens));
  EXPECT_EQ(fetched.n_tokens, 0u);
  EXPECT_EQ(fetched.error.code(), StatusCode::kCorruption) << fetched.error.ToString();
  EXPECT_EQ(b->stats().corrupt_blocks, 1);
  EXPECT_EQ(client_->Command({"EXISTS", key})->integer, 0);  // gone for every replica
  EXPECT_EQ(b->Find(tokens).n_tokens, 0u);
}

TEST_F(RemoteTierTest, ARedisOutageNeverFailsOrHoldsUpTheLocalTiers) {
  auto a = Replica();
  redis_.Stop();
  const std::vector<llama_token> tokens = Tokens(2 * kB + 1, 42);
  const auto start = std::chrono::steady_clock::now();
  StoreAll(*a, tokens);
  a->Flush();
  EXPECT_EQ(FetchAndVerify(*a, tokens), tokens.size());  // served from RAM
  auto b = Replica();
  EXPECT_EQ(b->Discover(tokens), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_GT(a->stats().remote_writes_dropped, 0);
  EXPECT_FALSE(client_->stats().up);
  // Restarted empty: blocks are written again as they are used, after the backoff.
  ASSERT_TRUE(redis_.Start());
  for (int i = 0; i < 60 && b->Discover(tokens) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    StoreAll(*a, tokens);
    a->Flush();
  }
  EXPECT_EQ(b->Find(tokens).n_tokens, 2 * kB);
  EXPECT_TRUE(client_->stats().up);
}

}  // namespace
}  // namespace kvault::store
