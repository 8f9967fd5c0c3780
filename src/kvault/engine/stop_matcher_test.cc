#include "kvault/engine/stop_matcher.h"

#include <gtest/gtest.h>

namespace kvault::engine {
namespace {

std::string Feed(StopMatcher& matcher, const std::vector<std::string>& pieces, bool* stopped) {
  std::string out;
  *stopped = false;
  for (const std::string& piece : pieces) {
    StopMatcher::Output o = matcher.Push(piece);
    out += o.text;
    if (o.stopped) {
      *stopped = true;
      return out;
    }
  }
  return out + matcher.Flush();
}

TEST(StopMatcherTest, NoStopsPassesEverythingThrough) {
  StopMatcher matcher({});
  bool stopped = false;
  EXPECT_EQ(Feed(matcher, {"a", "b", "c"}, &stopped), "abc");
  EXPECT_FALSE(stopped);
}

TEST(StopMatcherTest, StopSplitAcrossPiecesIsNeverEmitted) {
  StopMatcher matcher({"END"});
  bool stopped = false;
  StopMatcher::Output first = matcher.Push("hello E");
  EXPECT_EQ(first.text, "hello ");  // "E" might start "END": held back
  EXPECT_EQ(Feed(matcher, {"N", "D and more"}, &stopped), "");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcherTest, HeldTextIsReleasedWhenItCannotMatch) {
  StopMatcher matcher({"END"});
  bool stopped = false;
  EXPECT_EQ(Feed(matcher, {"the E", "ND", "x"}, &stopped), "the ");
  StopMatcher other({"END"});
  EXPECT_EQ(Feed(other, {"the E", "Nx", "y"}, &stopped), "the ENxy");
  EXPECT_FALSE(stopped);
}

TEST(StopMatcherTest, EarliestOfSeveralStopsWins) {
  StopMatcher matcher({"world", "lo w"});
  bool stopped = false;
  EXPECT_EQ(Feed(matcher, {"hello world"}, &stopped), "hel");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcherTest, HeldTailAtTheEndIsFlushed) {
  StopMatcher matcher({"</s>"});
  bool stopped = false;
  EXPECT_EQ(Feed(matcher, {"text </"}, &stopped), "text </");
  EXPECT_FALSE(stopped);
}

}  // namespace
}  // namespace kvault::engine
