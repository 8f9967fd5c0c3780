// Session files (session_file.h) on synthetic KV blocks, no model: the round trip, refusal
// of every truncation and flipped byte, re-rooting under another partition, and cutting a
// file to the blocks still to be had.
#include "kvault/conversation/session_file.h"

#include <gtest/gtest.h>

#include "kvault/kv/snapshot_codec.h"

namespace kvault::conversation {
namespace {

constexpr uint32_t kB = 4;
constexpr int32_t kGgmlF16 = 1;

kv::BlockNamespace Space() {
  kv::BlockNamespace space;
  space.model_fingerprint = Hash128{3, 5};
  space.block_size = kB;
  return space;
}

// One encoded block of `tokens` at `first_pos`, under `parent`; its KV bytes depend on the
// positions and tokens only.
store::BlockBytes Block(const kv::BlockName& parent, std::vector<llama_token> tokens,
                        llama_pos first_pos, kv::BlockEncoding encoding = kv::BlockEncoding::kF16) {
  kv::KvBlock block;
  block.first_pos = first_pos;
  block.n_tokens = static_cast<uint32_t>(tokens.size());
  block.shape.layers.assign(
      1,
      kv::LayerShape{.k_type = kGgmlF16, .k_row_size = 16, .v_type = kGgmlF16, .v_row_size = 16});
  for (size_t i = 0; i < block.ExpectedDataSize(); ++i) {
    block.data.push_back(static_cast<uint8_t>(i * 7 + tokens[(i / 16) % tokens.size()]));
  }
  kv::BlockMeta meta;
  meta.space = Space();
  meta.parent = parent;
  meta.name = kv::ComputeBlockName(parent, meta.space, tokens);
  meta.tokens = std::move(tokens);
  meta.encoding = encoding;
  return std::make_shared<const std::vector<uint8_t>>(
      kv::EncodeBlock(block, meta, {.encoding = encoding}).value());
}

kv::BlockName NameOf(const store::BlockBytes& block) {
  return kv::PeekBlockMeta(*block).value().name;
}

// A session of 2 turns whose 6 tokens are covered by a full and a partial block under `root`.
SessionFile Example(const kv::BlockName& root = {}) {
  SessionFile file;
  file.session.name = "trip";
  file.session.conversation_id = "c1";
  file.session.created_unix = 1700000000;
  file.session.model = "0305";
  file.session.turns = {{"user", "Where did we stop?", 1683108000},
                        {"assistant", "At the river.", 0}};
  file.session.tokens = {10, 11, 12, 13, 14, 15};
  file.blocks.push_back(Block(root, {10, 11, 12, 13}, 0));
  file.blocks.push_back(Block(NameOf(file.blocks[0]), {14, 15}, kB));
  for (const store::BlockBytes& block : file.blocks) file.session.blocks.push_back(NameOf(block));
  file.session.kv_tokens = 6;
  return file;
}

TEST(SessionFileTest, RoundTripKeepsHistoryTokensAndBlockBytes) {
  const SessionFile file = Example();
  Result<SessionFile> back = DecodeSessionFile(EncodeSessionFile(file));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->session.name, "trip");
  EXPECT_EQ(back->session.conversation_id, "c1");
  EXPECT_EQ(back->session.created_unix, 1700000000);
  EXPECT_EQ(back->session.model, "0305");
  ASSERT_EQ(back->session.turns.size(), 2u);
  EXPECT_EQ(back->session.turns[1].content, "At the river.");
  EXPECT_EQ(back->session.turns[0].time, 1683108000);  // when it was said
  EXPECT_EQ(back->session.turns[1].time, 0);           // unknown: absent in the file
  EXPECT_EQ(back->session.tokens, file.session.tokens);
  EXPECT_EQ(back->session.blocks, file.session.blocks);
  EXPECT_EQ(back->session.kv_tokens, 6);
  ASSERT_EQ(back->blocks.size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(*back->blocks[i], *file.blocks[i]);
}

TEST(SessionFileTest, TheScopeDoesNotTravel) {
  SessionFile file = Example();
  file.session.scope = "key-abc";
  EXPECT_EQ(DecodeSessionFile(EncodeSessionFile(file))->session.scope, "");
}

TEST(SessionFileTest, EveryTruncationIsRefusedAsBadInput) {
  const std::vector<uint8_t> bytes = EncodeSessionFile(Example());
  for (size_t n = 0; n < bytes.size(); ++n) {
    Result<SessionFile> cut = DecodeSessionFile(std::span(bytes).first(n));
    ASSERT_FALSE(cut.ok()) << n;
    EXPECT_EQ(cut.status().code(), StatusCode::kInvalidArgument) << n;
  }
}

TEST(SessionFileTest, EveryFlippedByteIsRefusedAsBadInput) {
  const std::vector<uint8_t> bytes = EncodeSessionFile(Example());
  for (size_t i = 0; i < bytes.size(); i += 3) {
    std::vector<uint8_t> flipped = bytes;
    flipped[i] ^= 0x20;
    Result<SessionFile> bad = DecodeSessionFile(flipped);
    ASSERT_FALSE(bad.ok()) << i;
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << i;
  }
}

TEST(SessionFileTest, OtherFilesAreNamedForWhatTheyAre) {
  const std::string json = R"({"format": "kvault-session-1"})";
  Result<SessionFile> bad = DecodeSessionFile(std::vector<uint8_t>(json.begin(), json.end()));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not a kvault session file"), std::string::npos)
      << bad.status().message();
  std::vector<uint8_t> trailing = EncodeSessionFile(Example());
  trailing.push_back(0);
  EXPECT_FALSE(DecodeSessionFile(trailing).ok());
}

TEST(SessionFileTest, ABlockListThatDisagreesWithTheBlocksIsRefused) {
  SessionFile file = Example();
  std::swap(file.session.blocks[0], file.session.blocks[1]);
  Result<SessionFile> bad = DecodeSessionFile(EncodeSessionFile(file));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(SessionFileTest, ReRootingRenamesTheChainAndKeepsItsKv) {
  const SessionFile file = Example();
  const kv::BlockName other = kv::PartitionRoot("key-123");
  Result<std::vector<store::BlockBytes>> rooted = ReRootBlocks(file.blocks, other);
  ASSERT_TRUE(rooted.ok()) << rooted.status().ToString();
  ASSERT_EQ(rooted->size(), 2u);
  const kv::DecodedBlock first = kv::DecodeBlock(*(*rooted)[0]).value();
  const kv::DecodedBlock second = kv::DecodeBlock(*(*rooted)[1]).value();
  EXPECT_EQ(first.meta.parent, other);
  EXPECT_EQ(first.meta.name, kv::ComputeBlockName(other, Space(), first.meta.tokens));
  EXPECT_EQ(second.meta.parent, first.meta.name);
  EXPECT_FALSE(first.meta.name == file.session.blocks[0]);
  EXPECT_EQ(first.block.data, kv::DecodeBlock(*file.blocks[0]).value().block.data);
  EXPECT_EQ(second.block.data, kv::DecodeBlock(*file.blocks[1]).value().block.data);
  // Already under the root: the very same bytes.
  Result<std::vector<store::BlockBytes>> same = ReRootBlocks(file.blocks, {});
  ASSERT_TRUE(same.ok());
  EXPECT_EQ((*same)[0], file.blocks[0]);
}

TEST(SessionFileTest, PackingCutsTheFileToTheBlocksStillThere) {
  const SessionFile full = Example();
  const SessionFile cut = PackSessionFile(full.session, {full.blocks[0]});
  ASSERT_EQ(cut.session.blocks.size(), 1u);
  EXPECT_EQ(cut.session.blocks[0], full.session.blocks[0]);
  EXPECT_EQ(cut.session.kv_tokens, kB);
  EXPECT_EQ(cut.session.kv_bytes, static_cast<int64_t>(full.blocks[0]->size()));
  EXPECT_TRUE(DecodeSessionFile(EncodeSessionFile(cut)).ok());
  const SessionFile none = PackSessionFile(full.session, {});
  EXPECT_TRUE(none.session.blocks.empty());
  EXPECT_EQ(none.session.kv_tokens, 0);
}

}  // namespace
}  // namespace kvault::conversation
