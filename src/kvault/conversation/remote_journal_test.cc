// RemoteJournal against a real redis-server: one writer per conversation, stale writers
// refused, a lost list written again from the local log. (cluster_test runs it end to end.)
#include "kvault/conversation/remote_journal.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>
#include <unistd.h>

#include "kvault/base/coding.h"
#include "kvault/base/hash.h"
#include "kvault/conversation/conversation.h"
#include "kvault/testing/redis_server.h"

namespace kvault::conversation {
namespace {

class RemoteJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::RedisServer::Available()) GTEST_SKIP() << "redis-server is not installed";
    ASSERT_TRUE(redis_.Start());
    dir_ = std::filesystem::temp_directory_path() /
           ("kvault_remote_journal_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    journal_ = Journal::Open(dir_.string()).value();
    client_ = std::make_shared<store::RedisClient>(
        store::RedisClient::Options{.url = store::ParseRedisUrl(redis_.url()).value()});
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<RemoteJournal> Replica(const std::string& name) {
    return std::make_unique<RemoteJournal>(client_, "t", name, std::chrono::milliseconds(1000),
                                           journal_.get());
  }
  // The list's length; retried across the client's backoff after a Redis restart.
  int64_t ListLength() {
    const std::string key = "t:conv:" + HashBytes128(AsBytes(ConversationKey("", "c"))).ToHex();
    for (int i = 0; i < 100; ++i) {
      Result<store::RedisReply> length = client_->Command({"LLEN", key});
      if (length.ok()) return length->integer;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  testing::RedisServer redis_;
  std::filesystem::path dir_;
  std::unique_ptr<Journal> journal_;
  std::shared_ptr<store::RedisClient> client_;
};

TEST_F(RemoteJournalTest, ALeaseIsHeldByOneReplicaAtATime) {
  auto a = Replica("a");
  auto b = Replica("b");
  Result<RemoteJournal::Lease> first = a->Acquire("", "c", std::chrono::milliseconds(0));
  ASSERT_TRUE(first.ok() && first->held());
  Result<RemoteJournal::Lease> refused = b->Acquire("", "c", std::chrono::milliseconds(100));
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(b->stats().lease_conflicts, 1);
  // Released with the lease object: the next one gets a newer fence.
  const int64_t fence = first->fence();
  *first = RemoteJournal::Lease();
  Result<RemoteJournal::Lease> second = b->Acquire("", "c", std::chrono::milliseconds(0));
  ASSERT_TRUE(second.ok() && second->held());
  EXPECT_GT(second->fence(), fence);
}

TEST_F(RemoteJournalTest, AWriterWithAStaleFenceIsRefusedAndOverwritesNothing) {
  auto a = Replica("a");
  auto b = Replica("b");
  Result<RemoteJournal::Lease> lease_a = a->Acquire("", "c", std::chrono::milliseconds(0));
  ASSERT_TRUE(lease_a.ok() && lease_a->held());
  const std::string records[] = {"header", "turn 1"};
  ASSERT_TRUE(a->Append("", "c", 0, records).ok());
  // A pauses past its lease (here: the lease key vanishes), B takes over and writes.
  const std::string hash = HashBytes128(AsBytes(ConversationKey("", "c"))).ToHex();
  ASSERT_TRUE(client_->Command({"DEL", "t:lease:" + hash}).ok());
  Result<RemoteJournal::Lease> lease_b = b->Acquire("", "c", std::chrono::milliseconds(0));
  ASSERT_TRUE(lease_b.ok() && lease_b->held());
  const std::string newer[] = {"turn 2 by b"};
  ASSERT_TRUE(b->Append("", "c", 2, newer).ok());
  // A wakes up and writes with its old fence: refused, the list keeps B's turn.
  const std::string stale[] = {"turn 2 by a"};
  EXPECT_EQ(a->Append("", "c", 2, stale).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a->stats().stale_refused, 1);
  EXPECT_EQ(ListLength(), 3);
  const std::string key = "t:conv:" + hash;
  EXPECT_EQ(client_->Command({"LINDEX", key, "2"})->str, "turn 2 by b");
}

TEST_F(RemoteJournalTest, AListRedisLostIsWrittenAgainFromTheLocalLog) {
  auto a = Replica("a");
  journal_->SetMirror(a.get());
  Result<RemoteJournal::Lease> lease = a->Acquire("", "c", std::chrono::milliseconds(0));
  ASSERT_TRUE(lease.ok() && lease->held());
  const JournalTurn turn{"user", "hello", {1, 2, 3}};
  ASSERT_TRUE(journal_->Record("", "c", 0, {&turn, 1}, {}).ok());
  ASSERT_EQ(ListLength(), 2);  // header and update
  redis_.Stop();
  ASSERT_TRUE(redis_.Start());  // back, empty
  EXPECT_EQ(ListLength(), 0);
  // The next turn's sync (under a new lease) finds the list shorter and writes it again.
  *lease = RemoteJournal::Lease();
  Result<RemoteJournal::Lease> again = a->Acquire("", "c", std::chrono::milliseconds(2000));
  ASSERT_TRUE(again.ok() && again->held());
  EXPECT_FALSE(a->NewerRecords("", "c", journal_->RecordCount("", "c")).has_value());
  EXPECT_EQ(ListLength(), 2);
  EXPECT_EQ(a->stats().resyncs, 1);
}

}  // namespace
}  // namespace kvault::conversation
