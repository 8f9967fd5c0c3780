#include "kvault/base/utf8.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

const std::string kFffd(kReplacementCharacter);

TEST(Utf8Test, ValidTextIsKeptAsIs) {
  const std::string text = "plain ascii, caf\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80";
  EXPECT_TRUE(IsValidUtf8(text));
  EXPECT_EQ(SanitizeUtf8(text), text);
}

TEST(Utf8Test, EachMaximalInvalidSubpartBecomesOneReplacementCharacter) {
  // Unicode's own example (chapter 3, "U+FFFD Substitution of Maximal Subparts"):
  // 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a FFFD FFFD FFFD b FFFD c FFFD FFFD d.
  const std::string text =
      "a\xF1\x80\x80\xE1\x80\xC2"
      "b\x80"
      "c\x80\xBF"
      "d";
  EXPECT_FALSE(IsValidUtf8(text));
  EXPECT_EQ(SanitizeUtf8(text),
            "a" + kFffd + kFffd + kFffd + "b" + kFffd + "c" + kFffd + kFffd + "d");
}

TEST(Utf8Test, OverlongSurrogateAndOutOfRangeFormsAreInvalid) {
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // U+D800, a surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // cut short
  EXPECT_EQ(SanitizeUtf8("x\xE2\x82"), "x" + kFffd);
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);
}

TEST(Utf8Test, SanitizedTextIsValidAndStable) {
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
  const std::string once = SanitizeUtf8(bytes);
  EXPECT_TRUE(IsValidUtf8(once));
  EXPECT_EQ(SanitizeUtf8(once), once);
}

}  // namespace
}  // namespace kvault
