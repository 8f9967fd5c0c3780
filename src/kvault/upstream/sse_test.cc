#include "kvault/upstream/sse.h"

#include <gtest/gtest.h>

namespace kvault::upstream {
namespace {

TEST(SseParserTest, SplitsEventsHoweverTheBytesAreCut) {
  const std::string stream =
      "data: {\"a\":1}\n\n: a comment\n\nevent: x\ndata: {\"b\":2}\r\n\r\ndata: [DONE]\n\n";
  for (size_t cut = 1; cut <= stream.size(); ++cut) {
    SseParser parser;
    std::vector<std::string> events;
    for (size_t i = 0; i < stream.size(); i += cut) {
      for (std::string& e : parser.Push(std::string_view(stream).substr(i, cut))) {
        events.push_back(std::move(e));
      }
    }
    ASSERT_EQ(events.size(), 3u) << "cut " << cut;
    EXPECT_EQ(events[0], "{\"a\":1}");
    EXPECT_EQ(events[1], "{\"b\":2}");
    EXPECT_EQ(events[2], "[DONE]");
    EXPECT_EQ(parser.pending(), 0u);
  }
}

TEST(SseParserTest, JoinsDataLinesAndHoldsAnIncompleteEvent) {
  SseParser parser;
  EXPECT_TRUE(parser.Push("data: one\ndata: two\n").empty());
  EXPECT_GT(parser.pending(), 0u);
  const std::vector<std::string> events = parser.Push("\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], "one\ntwo");
}

}  // namespace
}  // namespace kvault::upstream
