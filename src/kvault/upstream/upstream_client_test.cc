// The client's own logic: URLs, and an upstream that is not there. Against a real
// llama-server: tests/integration/upstream_test.cc.
#include "kvault/upstream/upstream_client.h"

#include <gtest/gtest.h>

#include "kvault/testing/free_port.h"

namespace kvault::upstream {
namespace {

TEST(UpstreamUrlTest, ParsesHostPortAndBase) {
  UpstreamEndpoint e = ParseUpstreamUrl("http://127.0.0.1:8000/v1").value();
  EXPECT_EQ(e.host, "127.0.0.1");
  EXPECT_EQ(e.port, 8000);
  EXPECT_EQ(e.base, "/v1");
  e = ParseUpstreamUrl("http://gpu-box/").value();
  EXPECT_EQ(e.port, 80);
  EXPECT_EQ(e.base, "");
  e = ParseUpstreamUrl("http://gpu-box:11434").value();
  EXPECT_EQ(e.base, "/v1");
  EXPECT_EQ(ParseUpstreamUrl("http://h:8000/openai/v1/").value().base, "/openai/v1");
  for (const char* bad : {"127.0.0.1:8000", "https://h/v1", "http://:80", "http://h:0",
                          "http://h:99999", "http://h:80x"}) {
    const Result<UpstreamEndpoint> parsed = ParseUpstreamUrl(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find("--upstream"), std::string::npos);
  }
}

TEST(UpstreamClientTest, AnUpstreamThatIsNotThereIsA502NotAHang) {
  std::unique_ptr<UpstreamClient> client =
      UpstreamClient::Create(
          {.url = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort()) + "/v1",
           .model = "m"})
          .value();
  const Result<CompletionOutcome> outcome =
      client->Complete({.prompt = {1, 2, 3}}, [](std::string_view) { return true; });
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().detail(), ErrorDetail::kUpstreamUnavailable);
  EXPECT_FALSE(client->stats().up);
  EXPECT_EQ(client->stats().errors, 1);
  EXPECT_EQ(client->Models().status().detail(), ErrorDetail::kUpstreamUnavailable);
}

}  // namespace
}  // namespace kvault::upstream
