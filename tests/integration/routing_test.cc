// End-to-end tests of the X-Conversation-Id header (README "Running several replicas"): a
// router hashes it to keep a conversation on one replica, so the server takes it as the
// conversation's id on every route that takes one. The header alone works like the body's
// "conversation_id"; both given and equal is that conversation; both given and different, or
// the header twice, is an OpenAI-shaped 400 that stores nothing.
#include <set>
#include <string>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

httplib::Headers IdHeader(const std::string& id) { return {{"X-Conversation-Id", id}}; }

Json UserTurn(const std::string& text) {
  return {
      {"messages", {{{"role", "user"}, {"content", text}}}}, {"max_tokens", 2}, {"temperature", 0}};
}

class RoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{"--model", TestModelPath()});
    ASSERT_TRUE(server_->ok()) << server_->log();
  }
  // POSTs `body` with `headers`; returns the parsed reply and expects status `expected`.
  Json Post(const std::string& path, const httplib::Headers& headers, const Json& body,
            int expected = 200) {
    httplib::Client client("127.0.0.1", server_->port());
    client.set_read_timeout(std::chrono::seconds(120));
    httplib::Result result = client.Post(path, headers, DumpJson(body), "application/json");
    EXPECT_TRUE(result) << path;
    if (!result) return Json();
    EXPECT_EQ(result->status, expected) << path << ": " << result->body;
    return ParseJson(result->body).value_or(Json());
  }
  int GetStatus(const std::string& path, const httplib::Headers& headers) {
    httplib::Client client("127.0.0.1", server_->port());
    httplib::Result result = client.Get(path, headers);
    return result ? result->status : -1;
  }
  // The ids /v1/conversations/list shows.
  std::set<std::string> Conversations() {
    const Json list = Post("/v1/conversations/list", {}, Json::object());
    std::set<std::string> ids;
    for (const Json& c : list["conversations"]) ids.insert(c["conversation_id"].get<std::string>());
    return ids;
  }
  int StoredTurns(const std::string& id) {
    httplib::Client client("127.0.0.1", server_->port());
    httplib::Result result = client.Get("/v1/conversations/" + id + "/history");
    if (!result || result->status != 200) return -1;
    return static_cast<int>(ParseJson(result->body).value_or(Json())["turns"].size());
  }
  static void ExpectOpenAiError(const Json& reply, const std::string& mentions) {
    ASSERT_TRUE(reply.contains("error")) << DumpJson(reply);
    EXPECT_EQ(reply["error"]["type"], "invalid_request_error");
    EXPECT_NE(reply["error"]["message"].get<std::string>().find(mentions), std::string::npos)
        << reply["error"]["message"];
  }

  std::unique_ptr<ServerProcess> server_;
};

TEST_F(RoutingTest, HeaderAloneKeepsTheConversationLikeTheBodyField) {
  Post("/v1/chat/completions", IdHeader("by-header"), UserTurn("My name is Alice."));
  const Json second =
      Post("/v1/chat/completions", IdHeader("by-header"), UserTurn("What is my name?"));
  EXPECT_EQ(second["kvault"]["history"]["action"], "appended") << DumpJson(second["kvault"]);
  EXPECT_EQ(Conversations(), std::set<std::string>{"by-header"});
  EXPECT_EQ(StoredTurns("by-header"), 4);  // two questions, two replies
}

TEST_F(RoutingTest, EqualHeaderAndBodyFieldNameOneConversation) {
  Json first = UserTurn("Hello.");
  first["conversation_id"] = "both";
  Post("/v1/chat/completions", IdHeader("both"), first);
  Json second = UserTurn("How are you?");
  second["conversation_id"] = "both";
  Post("/v1/chat/completions", {}, second);
  Post("/v1/chat/completions", IdHeader("both"), UserTurn("Goodbye."));
  EXPECT_EQ(Conversations(), std::set<std::string>{"both"});
  EXPECT_EQ(StoredTurns("both"), 6);  // header and field, field, header: one history
}

TEST_F(RoutingTest, DifferentHeaderAndBodyFieldIsRefusedAndStoresNothing) {
  Json turn = UserTurn("Hello.");
  turn["conversation_id"] = "in-body";
  const Json chat = Post("/v1/chat/completions", IdHeader("in-header"), turn, 400);
  ExpectOpenAiError(chat, "X-Conversation-Id");
  Json prompt = {{"prompt", "Once upon a time"}, {"max_tokens", 2}, {"conversation_id", "in-body"}};
  ExpectOpenAiError(Post("/v1/completions", IdHeader("in-header"), prompt, 400), "in-header");
  Json append = {{"conversation_id", "in-body"},
                 {"messages", {{{"role", "user"}, {"content", "A note."}}}}};
  ExpectOpenAiError(Post("/v1/conversations/append", IdHeader("in-header"), append, 400),
                    "in-body");
  EXPECT_TRUE(Conversations().empty());
}

TEST_F(RoutingTest, HeaderGivenTwiceIsRefused) {
  const httplib::Headers twice = {{"X-Conversation-Id", "a"}, {"X-Conversation-Id", "b"}};
  ExpectOpenAiError(Post("/v1/chat/completions", twice, UserTurn("Hello."), 400), "more than once");
  EXPECT_TRUE(Conversations().empty());
}

TEST_F(RoutingTest, HeaderIsValidatedLikeTheField) {
  ExpectOpenAiError(
      Post("/v1/chat/completions", IdHeader(std::string(300, 'x')), UserTurn("Hi."), 400),
      "conversation_id");
  EXPECT_TRUE(Conversations().empty());
}

TEST_F(RoutingTest, CompletionsKeepTheHeadersConversation) {
  Post("/v1/completions", IdHeader("story"), {{"prompt", "Once upon a time"}, {"max_tokens", 2}});
  EXPECT_EQ(Conversations(), std::set<std::string>{"story"});
}

TEST_F(RoutingTest, ConversationRoutesTakeTheHeader) {
  const Json append = Post("/v1/conversations/append", IdHeader("notes"),
                           {{"messages", {{{"role", "user"}, {"content", "The key is blue."}}}}});
  EXPECT_EQ(append["conversation_id"], "notes");
  EXPECT_EQ(StoredTurns("notes"), 1);
  const Json found = Post("/v1/conversations/search", IdHeader("notes"), {{"query", "key"}});
  EXPECT_TRUE(found.contains("results")) << DumpJson(found);
  // The history route has the id in its path: a header naming another is refused.
  EXPECT_EQ(GetStatus("/v1/conversations/notes/history", IdHeader("notes")), 200);
  EXPECT_EQ(GetStatus("/v1/conversations/notes/history", IdHeader("other")), 400);
  const Json ended = Post("/v1/conversations/end", IdHeader("notes"), Json::object());
  EXPECT_EQ(ended["status"], "ended");
  EXPECT_TRUE(Conversations().empty());
}

}  // namespace
}  // namespace kvault::testing
