#include "kvault/server/auth.h"

#include <gtest/gtest.h>

namespace kvault::server {
namespace {

TEST(AuthTest, WithoutKeysEverythingIsTheEmptyScope) {
  ApiKeyAuth auth({});
  EXPECT_FALSE(auth.enabled());
  EXPECT_EQ(auth.Authorize("").value(), "");
  EXPECT_EQ(auth.Authorize("Bearer anything").value(), "");
}

TEST(AuthTest, EachKeyIsItsOwnScope) {
  ApiKeyAuth auth(SplitKeys("alpha, beta"));
  const std::string a = auth.Authorize("Bearer alpha").value();
  const std::string b = auth.Authorize("Bearer beta").value();
  EXPECT_NE(a, b);
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a.find("alpha"), std::string::npos);  // the key itself never is the scope
  EXPECT_EQ(auth.Authorize("Bearer alpha").value(), a);
}

TEST(AuthTest, MissingOrWrongKeysAreUnauthenticated) {
  ApiKeyAuth auth({"secret"});
  EXPECT_EQ(auth.Authorize("").status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authorize("Bearer secre").status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authorize("Basic secret").status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authorize("Bearer secret ").status().code(), StatusCode::kUnauthenticated);
}

TEST(AuthTest, SplitKeysDropsBlanks) {
  EXPECT_EQ(SplitKeys(" a,,b , "), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(SplitKeys("").empty());
}

}  // namespace
}  // namespace kvault::server
