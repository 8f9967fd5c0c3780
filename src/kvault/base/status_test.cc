#include "kvault/base/status.h"

#include <memory>

#include <gtest/gtest.h>

#include "kvault/base/result.h"
#include "kvault/base/status_macros.h"

namespace kvault {
namespace {

Result<int> ParsePositive(int value) {
  if (value <= 0) return InvalidArgumentError("not positive: " + std::to_string(value));
  return value;
}

Result<int> Doubled(int value) {
  KV_ASSIGN_OR_RETURN(int parsed, ParsePositive(value));
  return parsed * 2;
}

Status CheckBoth(int a, int b) {
  KV_RETURN_IF_ERROR(ParsePositive(a).status());
  KV_RETURN_IF_ERROR(ParsePositive(b).status());
  return Status::Ok();
}

TEST(StatusTest, DefaultIsOk) {
  Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.ToString(), "OK");
}

TEST(StatusTest, ToStringNamesTheCode) {
  EXPECT_EQ(NotFoundError("no conversation 'abc'").ToString(), "NotFound: no conversation 'abc'");
  EXPECT_EQ(CorruptionError("bad").code(), StatusCode::kCorruption);
}

TEST(StatusTest, WithPrefixKeepsCodeAndOk) {
  Status status = IOError("disk full").WithPrefix("store");
  EXPECT_EQ(status.code(), StatusCode::kIOError);
  EXPECT_EQ(status.message(), "store: disk full");
  EXPECT_TRUE(Status::Ok().WithPrefix("x").ok());
}

TEST(ResultTest, AssignOrReturnPropagatesTheError) {
  EXPECT_EQ(Doubled(21).value(), 42);
  Result<int> failed = Doubled(-1);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().message(), "not positive: -1");
}

TEST(ResultTest, ReturnIfErrorStopsAtTheFirstFailure) {
  EXPECT_TRUE(CheckBoth(1, 2).ok());
  EXPECT_EQ(CheckBoth(1, -2).message(), "not positive: -2");
}

TEST(ResultTest, HoldsMoveOnlyValues) {
  Result<std::unique_ptr<int>> result = std::make_unique<int>(7);
  ASSERT_TRUE(result.ok());
  std::unique_ptr<int> owned = std::move(result).value();
  EXPECT_EQ(*owned, 7);
}

TEST(ResultDeathTest, ValueOnErrorAborts) {
  Result<int> failed = InvalidArgumentError("nope");
  EXPECT_DEATH((void)failed.value(), "Result::value\\(\\) on error");
}

}  // namespace
}  // namespace kvault
