#include "kvault/server/http_head.h"

#include <string>

#include <gtest/gtest.h>

namespace kvault::server {
namespace {

using State = HeadParse::State;

HeadParse Parse(const std::string& bytes, HeadLimits limits = {}) {
  return ParseRequestHead(bytes, limits);
}

int StatusOf(const std::string& bytes, HeadLimits limits = {}) {
  const HeadParse parse = Parse(bytes, limits);
  EXPECT_EQ(parse.state, State::kError) << bytes.substr(0, 80);
  return parse.error.status;
}

TEST(HttpHeadTest, ACompleteHeadIsForwardedWithCrlfAndItsBodyFramed) {
  const std::string head =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
  const HeadParse parse = Parse(head + "{\"a\": 1}....");
  ASSERT_EQ(parse.state, State::kComplete);
  EXPECT_EQ(parse.head.size, head.size());
  EXPECT_EQ(parse.head.forwarded, head);
  EXPECT_EQ(parse.head.body, BodyFraming::kLength);
  EXPECT_EQ(parse.head.content_length, 12u);
}

TEST(HttpHeadTest, BareLineFeedsAreAcceptedAndRewrittenAsCrlf) {
  const std::string head = "GET /health HTTP/1.1\nHost: x\n\n";
  const HeadParse parse = Parse(head + "GET");
  ASSERT_EQ(parse.state, State::kComplete);
  EXPECT_EQ(parse.head.forwarded, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(parse.head.size, head.size());
  EXPECT_EQ(parse.head.body, BodyFraming::kNone);
}

TEST(HttpHeadTest, AnIncompleteHeadWaitsForMore) {
  EXPECT_EQ(Parse("").state, State::kNeedMore);
  EXPECT_EQ(Parse("GET /health HT").state, State::kNeedMore);
  EXPECT_EQ(Parse("GET /health HTTP/1.1\r\nHost: x\r\n").state, State::kNeedMore);
}

TEST(HttpHeadTest, ALongUriIs414AsSoonAsTheLimitIsPassed) {
  // Refused from the first 8 KB, without waiting for the rest of a 100 KB line.
  EXPECT_EQ(StatusOf("GET /" + std::string(9000, 'a')), 414);
  EXPECT_EQ(StatusOf("GET /" + std::string(100000, 'a') + " HTTP/1.1\r\n\r\n"), 414);
  const HeadParse short_one = Parse("GET /" + std::string(100, 'a'));
  ASSERT_EQ(short_one.state, State::kNeedMore);
  EXPECT_EQ(short_one.recheck_at, 8 * 1024 + 1u);
}

TEST(HttpHeadTest, OversizedHeadersAre431) {
  EXPECT_EQ(
      StatusOf("GET / HTTP/1.1\r\nAuthorization: Bearer " + std::string(60000, 'k') + "\r\n\r\n"),
      431);
  EXPECT_EQ(StatusOf("GET / HTTP/1.1\r\nAuthorization: Bearer " + std::string(9000, 'k')), 431);
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(StatusOf(many + "\r\n"), 431);
  HeadLimits small;
  small.max_head_bytes = 200;
  std::string big = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 10; ++i)
    big += "X-" + std::to_string(i) + ": " + std::string(30, 'v') + "\r\n";
  EXPECT_EQ(StatusOf(big, small), 431);
}

TEST(HttpHeadTest, ABodyOverTheLimitIs413FromItsContentLength) {
  HeadLimits limits;
  limits.max_body_bytes = 1000;
  EXPECT_EQ(StatusOf("POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", limits), 413);
  EXPECT_EQ(Parse("POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", limits).state,
            State::kComplete);
}

TEST(HttpHeadTest, MalformedHeadsAre400) {
  EXPECT_EQ(StatusOf("GET\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("GET / HTTP/2.0\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("GET  / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("G(T / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("GET /\x01 HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("GET / HTTP/1.1\r\nName : v\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"), 400);
  constexpr char kNul[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
  EXPECT_EQ(StatusOf(std::string(kNul, sizeof(kNul) - 1)), 400);
  EXPECT_EQ(StatusOf("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"), 400);
}

TEST(HttpHeadTest, AmbiguousFramingIs400) {
  EXPECT_EQ(StatusOf("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400);
  EXPECT_EQ(StatusOf("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 400);
  EXPECT_EQ(StatusOf("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
  const HeadParse same = Parse("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n");
  ASSERT_EQ(same.state, State::kComplete);
  EXPECT_EQ(same.head.content_length, 3u);
  const HeadParse chunked = Parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
  ASSERT_EQ(chunked.state, State::kComplete);
  EXPECT_EQ(chunked.head.body, BodyFraming::kChunked);
}

TEST(HttpHeadTest, ExpectContinueIsSeenOnlyInHttp11) {
  EXPECT_TRUE(Parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                  .head.expects_continue);
  EXPECT_FALSE(Parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                   .head.expects_continue);
}

TEST(HttpHeadTest, LeadingEmptyLinesAreSkipped) {
  const HeadParse parse = Parse("\r\n\r\nGET / HTTP/1.1\r\n\r\n");
  ASSERT_EQ(parse.state, State::kComplete);
  EXPECT_EQ(parse.head.forwarded, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n"), 400);
}

TEST(ChunkedBodyScannerTest, FindsTheEndOfTheBodyByteByByteAndAtOnce) {
  const std::string body = "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
  const std::string next = "GET / HTTP/1.1\r\n\r\n";
  ChunkedBodyScanner at_once(1000);
  EXPECT_EQ(at_once.Consume(body + next), body.size());
  EXPECT_TRUE(at_once.done());
  ChunkedBodyScanner byte_by_byte(1000);
  size_t taken = 0;
  for (size_t i = 0; i < body.size() + next.size() && !byte_by_byte.done(); ++i) {
    taken += byte_by_byte.Consume(std::string_view(body + next).substr(i, 1));
  }
  EXPECT_TRUE(byte_by_byte.done());
  EXPECT_EQ(taken, body.size());
}

TEST(ChunkedBodyScannerTest, AcceptsBareLineFeeds) {
  ChunkedBodyScanner scanner(1000);
  const std::string body = "3\nabc\n0\n\n";
  EXPECT_EQ(scanner.Consume(body), body.size());
  EXPECT_TRUE(scanner.done());
}

TEST(ChunkedBodyScannerTest, RefusesOversizedAndMalformedBodies) {
  ChunkedBodyScanner big(10);
  big.Consume("8\r\n12345678\r\n8\r\n");
  ASSERT_TRUE(big.failed());
  EXPECT_EQ(big.error().status, 413);
  for (const std::string bad : {"x\r\n", "3\r\nabcX", "\r\n", "3\rX", "1234567890abcdef0\r\n"}) {
    ChunkedBodyScanner scanner(1 << 20);
    scanner.Consume(bad);
    EXPECT_TRUE(scanner.failed()) << bad;
    EXPECT_EQ(scanner.error().status, 400) << bad;
  }
}

}  // namespace
}  // namespace kvault::server
