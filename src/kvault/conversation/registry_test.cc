#include "kvault/conversation/registry.h"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

namespace kvault::conversation {
namespace {

using std::chrono::milliseconds;

TEST(TurnLockTest, ASecondLockWaitsUntilTheFirstIsReleasedEvenAfterAMove) {
  auto conversation = std::make_shared<Conversation>("", "c");
  TurnLock first(conversation);
  std::atomic<bool> acquired{false};
  std::thread other([&] {
    TurnLock second(conversation);
    acquired = true;
  });
  TurnLock moved = std::move(first);  // the lock travels, as from Prepare to Run
  EXPECT_FALSE(first.held());
  EXPECT_TRUE(moved.held());
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(acquired.load());
  moved->unanswered_turn = 7;
  moved.Release();
  other.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_EQ(TurnLock(conversation)->unanswered_turn, 7);
}

TEST(TurnLockTest, AssigningOverALockReleasesTheOldConversation) {
  auto a = std::make_shared<Conversation>("", "a");
  auto b = std::make_shared<Conversation>("", "b");
  TurnLock lock(a);
  lock = TurnLock(b);
  EXPECT_EQ(lock.id(), "b");
  std::atomic<bool> acquired{false};
  std::thread other([&] {
    TurnLock again(a);  // would wait forever if `a` were still locked
    acquired = true;
  });
  other.join();
  EXPECT_TRUE(acquired.load());
}

TEST(RegistryTest, ScopesAreApartAndARetiredConversationHasASuccessor) {
  Registry registry;
  {
    TurnLock k1 = registry.Lock("k1", "chat");
    k1->n_branches = 3;
  }
  EXPECT_FALSE(registry.LockExisting("k2", "chat").ok());
  EXPECT_EQ(registry.LockExisting("k2", "chat").status().code(), StatusCode::kNotFound);
  Result<TurnLock> found = registry.LockExisting("k1", "chat");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->n_branches, 3);
  std::shared_ptr<Conversation> old = found->shared();

  // A request waiting for the lock while the conversation is retired gets a new one.
  std::atomic<int64_t> seen_branches{-1};
  std::thread waiter([&] {
    TurnLock next = registry.Lock("k1", "chat");
    seen_branches = next->n_branches;
  });
  std::this_thread::sleep_for(milliseconds(30));
  registry.Retire(*found);
  found->Release();
  waiter.join();
  EXPECT_EQ(seen_branches.load(), 0);
  EXPECT_NE(registry.Find("k1", "chat"), old);
  EXPECT_EQ(registry.total_created(), 2);
}

}  // namespace
}  // namespace kvault::conversation
