#include "kvault/conversation/admission.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

namespace kvault::conversation {
namespace {

constexpr std::chrono::milliseconds kLong{60000};

TEST(AdmissionTest, RefusesBeyondThreadsPlusQueue) {
  Admission admission(/*max_running=*/2, /*max_waiting=*/2, kLong);
  std::vector<std::unique_ptr<Admission::Ticket>> tickets;
  for (int i = 0; i < 4; ++i) {
    Result<std::unique_ptr<Admission::Ticket>> ticket = admission.Enter();
    ASSERT_TRUE(ticket.ok()) << i;
    tickets.push_back(std::move(ticket).value());
  }
  Result<std::unique_ptr<Admission::Ticket>> fifth = admission.Enter();
  EXPECT_EQ(fifth.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(admission.stats().rejected, 1);
  tickets.pop_back();
  EXPECT_TRUE(admission.Enter().ok());
}

TEST(AdmissionTest, RunWaitsForAFreeThread) {
  Admission admission(1, 4, kLong);
  std::unique_ptr<Admission::Ticket> first = admission.Enter().value();
  ASSERT_TRUE(first->Run().ok());
  std::unique_ptr<Admission::Ticket> second = admission.Enter().value();
  std::atomic<bool> second_running{false};
  std::thread waiter([&] {
    ASSERT_TRUE(second->Run().ok());
    second_running = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(second_running.load());
  EXPECT_EQ(admission.stats().running, 1);
  EXPECT_EQ(admission.stats().waiting, 1);
  first.reset();
  waiter.join();
  EXPECT_TRUE(second_running.load());
  EXPECT_EQ(admission.stats().running, 1);
  EXPECT_EQ(admission.stats().waiting, 0);
}

TEST(AdmissionTest, CloseWakesWaitersWithUnavailable) {
  Admission admission(1, 1, kLong);
  std::unique_ptr<Admission::Ticket> first = admission.Enter().value();
  ASSERT_TRUE(first->Run().ok());
  std::unique_ptr<Admission::Ticket> second = admission.Enter().value();
  Status waited;
  std::thread waiter([&] { waited = second->Run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  admission.Close();
  waiter.join();
  EXPECT_EQ(waited.code(), StatusCode::kUnavailable);
  EXPECT_EQ(admission.Enter().status().code(), StatusCode::kUnavailable);
}

TEST(AdmissionTest, GivesUpAfterTheQueueTimeout) {
  Admission admission(1, 1, std::chrono::milliseconds(100));
  std::unique_ptr<Admission::Ticket> first = admission.Enter().value();
  ASSERT_TRUE(first->Run().ok());
  std::unique_ptr<Admission::Ticket> second = admission.Enter().value();
  const auto start = std::chrono::steady_clock::now();
  const Status waited = second->Run();
  EXPECT_EQ(waited.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(waited.message().find("--queue-timeout"), std::string::npos) << waited.message();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(100));
  EXPECT_EQ(admission.stats().timed_out, 1);
  EXPECT_LE(second->deadline(), std::chrono::steady_clock::now());
  second.reset();
  EXPECT_EQ(admission.stats().waiting, 0);  // the timed-out ticket left the queue
}

}  // namespace
}  // namespace kvault::conversation
