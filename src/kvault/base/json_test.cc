#include "kvault/base/json.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(JsonTest, ParsesValidText) {
  Result<Json> value = ParseJson(R"({"a": [1, 2, {"b": "c"}]})");
  ASSERT_TRUE(value.ok());
  EXPECT_EQ((*value)["a"][2]["b"], "c");
}

TEST(JsonTest, MalformedTextIsInvalidArgument) {
  EXPECT_EQ(ParseJson("{\"a\": ").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseJson("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseJson("{\"a\": \"\xff\"}").status().code(), StatusCode::kInvalidArgument);
}

TEST(JsonTest, DeepNestingIsRejectedBeforeParsing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  Result<Json> value = ParseJson(deep);
  ASSERT_FALSE(value.ok());
  EXPECT_NE(value.status().message().find("nested deeper"), std::string::npos);
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseJson("{\"s\": \"" + std::string(1000, '[') + "\"}").ok());
}

TEST(JsonTest, TypedFieldsReportWrongTypes) {
  const Json object = *ParseJson(R"({"s": "x", "n": 1.5, "i": 3, "b": true, "z": null})");
  EXPECT_EQ(OptionalString(object, "s", "s")->value(), "x");
  EXPECT_FALSE(OptionalString(object, "missing", "missing")->has_value());
  EXPECT_FALSE(OptionalString(object, "z", "z")->has_value());
  EXPECT_EQ(OptionalNumber(object, "n", "n")->value(), 1.5);
  EXPECT_EQ(OptionalInteger(object, "i", "i")->value(), 3);
  EXPECT_EQ(OptionalBool(object, "b", "b")->value(), true);

  Result<std::optional<std::string>> wrong = OptionalString(object, "n", "body.n");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().message(), "'body.n' must be a string, got number");
  EXPECT_FALSE(OptionalInteger(object, "n", "n").ok());
  EXPECT_FALSE(OptionalBool(object, "s", "s").ok());
}

TEST(JsonTest, HugeIntegersAreRejectedNotWrapped) {
  const Json object = *ParseJson(R"({"i": 18446744073709551615, "f": 1e300})");
  EXPECT_FALSE(OptionalInteger(object, "i", "i").ok());
  EXPECT_FALSE(OptionalInteger(object, "f", "f").ok());
}

TEST(JsonTest, DumpReplacesInvalidUtf8) {
  Json value = std::string("a\xff");
  EXPECT_EQ(DumpJson(value), "\"a\xEF\xBF\xBD\"");
}

}  // namespace
}  // namespace kvault
