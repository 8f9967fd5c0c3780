#include "kvault/conversation/sequence_pool.h"

#include <gtest/gtest.h>

namespace kvault::conversation {
namespace {

// The pool's bookkeeping with a recording stand-in for "clear the cells"; manager_test runs
// the same pool against the real llama context.
class SequencePoolTest : public ::testing::Test {
 protected:
  SequencePool MakePool(int n, int max_reserved = 0) {
    return SequencePool(n, max_reserved, [this](llama_seq_id seq_id) {
      cleared_.push_back(seq_id);
      return Status::Ok();
    });
  }
  std::vector<llama_seq_id> cleared_;
};

TEST_F(SequencePoolTest, ConversationGetsItsOwnSequenceBack) {
  SequencePool pool = MakePool(2);
  SequenceLease a = pool.Acquire("a").value();
  pool.Release("a", {1, 2, 3});
  SequenceLease again = pool.Acquire("a").value();
  EXPECT_EQ(again.seq_id, a.seq_id);
  EXPECT_EQ(again.tokens, (std::vector<llama_token>{1, 2, 3}));
  EXPECT_EQ(pool.stats().hits, 1);
  EXPECT_TRUE(cleared_.empty());
}

TEST_F(SequencePoolTest, LeastRecentlyUsedParkedConversationIsEvicted) {
  SequencePool pool = MakePool(2);
  SequenceLease a = pool.Acquire("a").value();
  pool.Release("a", {1});
  SequenceLease b = pool.Acquire("b").value();
  pool.Release("b", {2});
  (void)pool.Acquire("a").value();  // a is now more recent than b
  pool.Release("a", {1, 1});
  SequenceLease c = pool.Acquire("c").value();
  EXPECT_EQ(c.seq_id, b.seq_id);
  EXPECT_TRUE(c.tokens.empty());
  EXPECT_EQ(cleared_, std::vector<llama_seq_id>{b.seq_id});
  EXPECT_EQ(pool.stats().evictions, 1);
  EXPECT_EQ(pool.DeviceTokens("b"), 0);
  EXPECT_EQ(pool.DeviceTokens("a"), 2);
  (void)a;
}

TEST_F(SequencePoolTest, PinnedSequencesAreNeverTaken) {
  SequencePool pool = MakePool(1);
  ASSERT_TRUE(pool.Acquire("a").ok());
  EXPECT_EQ(pool.Acquire("b").status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(pool.Acquire("a").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool.Forget("a").code(), StatusCode::kFailedPrecondition);
}

TEST_F(SequencePoolTest, ForgetClearsAndFrees) {
  SequencePool pool = MakePool(1);
  SequenceLease a = pool.Acquire("a").value();
  pool.Release("a", {5});
  ASSERT_TRUE(pool.Forget("a").ok());
  EXPECT_EQ(cleared_, std::vector<llama_seq_id>{a.seq_id});
  EXPECT_TRUE(pool.Acquire("b").ok());
  EXPECT_EQ(pool.stats().evictions, 0);
}

TEST_F(SequencePoolTest, AReservedSequenceIsNeverTakenWhileParked) {
  SequencePool pool = MakePool(2, 1);
  const llama_seq_id pinned = pool.Acquire("pinned").value().seq_id;
  ASSERT_TRUE(pool.SetReserved("pinned", true).ok());
  pool.Release("pinned", {7, 7});
  // Others cycle through the one unreserved sequence, evicting each other only.
  for (const char* owner : {"a", "b", "c"}) {
    EXPECT_NE(pool.Acquire(owner).value().seq_id, pinned) << owner;
    pool.Release(owner, {1});
  }
  EXPECT_EQ(pool.stats().evictions, 2);
  const SequenceLease again = pool.Acquire("pinned").value();
  EXPECT_EQ(again.seq_id, pinned);
  EXPECT_EQ(again.tokens, (std::vector<llama_token>{7, 7}));
}

TEST_F(SequencePoolTest, ReservationsStopAtTheirMaximumAndForgetFreesOne) {
  SequencePool pool = MakePool(4, 2);
  for (const char* owner : {"p1", "p2", "p3"}) {
    ASSERT_TRUE(pool.Acquire(owner).ok());
    pool.Release(owner, {1});
  }
  EXPECT_TRUE(pool.CheckReservable("p1").ok());
  ASSERT_TRUE(pool.SetReserved("p1", true).ok());
  ASSERT_TRUE(pool.SetReserved("p2", true).ok());
  EXPECT_TRUE(pool.CheckReservable("p1").ok());  // already reserved
  const Status refused = pool.CheckReservable("p3");
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.detail(), ErrorDetail::kPinsExhausted);
  EXPECT_EQ(pool.SetReserved("p3", true).detail(), ErrorDetail::kPinsExhausted);
  EXPECT_FALSE(pool.IsReserved("p3"));
  EXPECT_EQ(pool.stats().n_reserved, 2);
  EXPECT_EQ(pool.stats().max_reserved, 2);
  ASSERT_TRUE(pool.Forget("p2").ok());
  EXPECT_TRUE(pool.SetReserved("p3", true).ok());
}

}  // namespace
TEST_F(SequencePoolTest, ForgetParkedClearsTheSelectedParkedSequencesOnly) {
  SequencePool pool = MakePool(3);
  const llama_seq_id k1a = pool.Acquire("k1/a").value().seq_id;
  pool.Release("k1/a", {1});
  (void)pool.Acquire("k1/running").value();  // running: stays
  const llama_seq_id k2 = pool.Acquire("k2/b").value().seq_id;
  pool.Release("k2/b", {2});
  Result<int64_t> forgotten =
      pool.ForgetParked([](std::string_view owner) { return owner.starts_with("k1/"); });
  ASSERT_TRUE(forgotten.ok());
  EXPECT_EQ(*forgotten, 1);
  EXPECT_EQ(cleared_, std::vector<llama_seq_id>{k1a});
  EXPECT_EQ(pool.DeviceTokens("k1/a"), 0);
  EXPECT_EQ(pool.DeviceTokens("k2/b"), 1);
  EXPECT_EQ(pool.Acquire("k2/b").value().seq_id, k2);
  // The freed slot is free again, and already clear.
  EXPECT_EQ(pool.Acquire("k3/c").value().seq_id, k1a);
  EXPECT_EQ(cleared_.size(), 1u);
}

}  // namespace kvault::conversation
