#include "kvault/conversation/journal.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <unistd.h>

#include "kvault/base/coding.h"

namespace kvault::conversation {
namespace {

class JournalTest : public ::testing::Test {
 protected:
  JournalTest() {
    char pattern[] = "/tmp/kvault_journal_XXXXXX";
    dir_ = ::mkdtemp(pattern);
  }
  ~JournalTest() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(JournalTest, TurnTimesRoundTripThroughARestart) {
  {
    std::unique_ptr<Journal> journal = Journal::Open(dir_).value();
    const JournalTurn turns[] = {{"user", "hello", {1, 2, 3}, 1683108000},
                                 {"assistant", "hi", {4, 5}, 1683108060}};
    ASSERT_TRUE(journal->Record("", "c", 0, turns, {}).ok());
    const JournalTurn unknown[] = {{"user", "and you?", {6}, 0}};
    ASSERT_TRUE(journal->Record("", "c", 2, unknown, {}).ok());
  }
  std::unique_ptr<Journal> journal = Journal::Open(dir_).value();
  const JournalEntry entry = journal->Read("", "c").value();
  ASSERT_EQ(entry.turns.size(), 3u);
  EXPECT_EQ(entry.turns[0].time, 1683108000);
  EXPECT_EQ(entry.turns[1].time, 1683108060);
  EXPECT_EQ(entry.turns[2].time, 0);
  EXPECT_EQ(entry.turns[1].tokens, (std::vector<int32_t>{4, 5}));
}

// The update record written before turns had times (type 4): it replays, with times 0.
TEST_F(JournalTest, RecordsWithoutTimesStillReplay) {
  std::vector<uint8_t> header, update;
  VectorSink h(&header), u(&update);
  PutFixed<uint8_t>(&h, 1);
  PutLengthPrefixed(&h, "");
  PutLengthPrefixed(&h, "old");
  PutFixed<uint8_t>(&u, 4);
  PutVarint64(&u, 0);  // kept
  PutVarint64(&u, 1);  // one turn
  PutLengthPrefixed(&u, "user");
  PutLengthPrefixed(&u, "from last year");
  PutVarint64(&u, 2);
  PutVarint64(&u, 7);
  PutVarint64(&u, 8);
  PutFixed<uint64_t>(&u, 0);  // tail
  PutFixed<uint64_t>(&u, 0);
  PutVarint64(&u, 0);  // no clear zone
  PutVarint64(&u, 1);  // unanswered turn 0
  const std::string records[] = {{header.begin(), header.end()}, {update.begin(), update.end()}};
  std::unique_ptr<Journal> journal = Journal::Open(dir_).value();
  const JournalEntry entry = journal->Adopt("", "old", records).value();
  ASSERT_EQ(entry.turns.size(), 1u);
  EXPECT_EQ(entry.turns[0].content, "from last year");
  EXPECT_EQ(entry.turns[0].tokens, (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(entry.turns[0].time, 0);
  EXPECT_EQ(entry.unanswered_turn, 0);
  // Appending to it writes the new record type after the old one.
  const JournalTurn reply[] = {{"assistant", "noted", {9}, 1700000000}};
  ASSERT_TRUE(journal->Record("", "old", 1, reply, {}).ok());
  const JournalEntry after = Journal::Open(dir_).value()->Read("", "old").value();
  ASSERT_EQ(after.turns.size(), 2u);
  EXPECT_EQ(after.turns[0].time, 0);
  EXPECT_EQ(after.turns[1].time, 1700000000);
}

}  // namespace
}  // namespace kvault::conversation
