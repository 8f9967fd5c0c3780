// End to end, the history semantics of conversation/history_plan.h over HTTP: deltas that
// repeat the system prompt append (the Alice example, asserted on the model's
// prompt); an edit archives the replaced turns as a readable branch that survives a restart;
// a client that resends exactly what it received never replaces anything; an unanswered
// turn is retried, not duplicated; and every request the chat route refuses with a 4xx
// leaves the conversation, its index and its journal exactly as they were.
#include <filesystem>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

const char* kKey = "history-test-key";

class HistoryTest : public ::testing::Test {
 protected:
  HistoryTest() {
    char pattern[] = "/tmp/kvault_history_XXXXXX";
    dir_ = ::mkdtemp(pattern);
  }
  ~HistoryTest() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<ServerProcess> Start(std::vector<std::string> args = {}) {
    args.insert(args.begin(), {"--model", TestModelPath(), "--window", "1024", "--cache-dir",
                               dir_ + "/blocks", "--data-dir", dir_ + "/data", "--api-key", kKey});
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }

  static httplib::Result Send(const ServerProcess& server, const std::string& method,
                              const std::string& path, const std::string& body = "",
                              const std::string& key = kKey) {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(300));
    const httplib::Headers headers = {{"Authorization", "Bearer " + key}};
    if (method == "GET") return client.Get(path, headers);
    return client.Post(path, headers, body, "application/json");
  }
  static Json Post(const ServerProcess& server, const std::string& path, const Json& body) {
    httplib::Result result = Send(server, "POST", path, DumpJson(body));
    EXPECT_TRUE(result && result->status == 200) << (result ? result->body : "no response");
    return result ? ParseJson(result->body).value_or(Json()) : Json();
  }
  static Json Get(const ServerProcess& server, const std::string& path) {
    httplib::Result result = Send(server, "GET", path);
    EXPECT_TRUE(result && result->status == 200) << (result ? result->body : "no response");
    return result ? ParseJson(result->body).value_or(Json()) : Json();
  }
  static Json Chat(const ServerProcess& server, const std::string& id, const Json& messages,
                   Json extra = Json::object()) {
    Json body = {
        {"conversation_id", id}, {"messages", messages}, {"max_tokens", 4}, {"temperature", 0}};
    body.update(extra);
    return Post(server, "/v1/chat/completions", body);
  }
  static Json Listed(const ServerProcess& server, const std::string& id) {
    Json list = Post(server, "/v1/conversations/list", Json::object());
    for (Json c : list["conversations"]) {
      c.erase("idle_seconds");  // the one field a refused request may change
      if (c["conversation_id"] == id) return c;
    }
    return Json();
  }
  // Bytes of every journal file: a refused request must not change them.
  uintmax_t JournalBytes() const {
    uintmax_t bytes = 0;
    std::error_code error;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_ + "/data", error)) {
      if (entry.is_regular_file() && entry.path().extension() == ".log") bytes += entry.file_size();
    }
    return bytes;
  }
  static std::string Reply(const Json& response) {
    return response["choices"][0]["message"]["content"].get<std::string>();
  }

  std::string dir_;
};

TEST_F(HistoryTest, DeltasThatRepeatTheSystemPromptAppendAndTheModelSeesEveryTurn) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  const Json system = {{"role", "system"}, {"content", "You are terse."}};
  Json last;
  for (const char* q : {"My name is Alice.", "I live in New York.", "What is my name?"}) {
    last = Chat(*server, "alice", {system, {{"role", "user"}, {"content", q}}},
                {{"return_prompt", true}});
    EXPECT_EQ(last["kvault"]["history"]["action"], "appended") << last.dump();
  }
  const Json listed = Listed(*server, "alice");
  EXPECT_EQ(listed["turns"], 7) << listed.dump();  // system + 3 x (question, reply)
  const std::string prompt = last["kvault"]["prompt"].get<std::string>();
  EXPECT_NE(prompt.find("My name is Alice."), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("I live in New York."), std::string::npos) << prompt;
  EXPECT_EQ(prompt.find("You are terse."), prompt.rfind("You are terse."));  // once
  // Streamed requests are counted by their real status.
  httplib::Result stream =
      Send(*server, "POST", "/v1/chat/completions",
           DumpJson({{"conversation_id", "alice"},
                     {"stream", true},
                     {"max_tokens", 2},
                     {"messages", {system, {{"role", "user"}, {"content", "Hi"}}}}}));
  ASSERT_TRUE(stream && stream->status == 200);
  httplib::Result metrics = Send(*server, "GET", "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->body.find("status=\"-1\""), std::string::npos);
  EXPECT_NE(metrics->body.find("route=\"chat_completions\",status=\"200\"} 4"), std::string::npos)
      << metrics->body;
}

TEST_F(HistoryTest, AnEditAtTurnThreeArchivesTheReplacedTurnsAsAReadableBranch) {
  Json messages = Json::array({{{"role", "system"}, {"content", "Be brief."}}});
  {
    auto server = Start();
    ASSERT_TRUE(server->ok());
    for (int i = 0; i < 5; ++i) {  // a client that resends the whole history each time
      messages.push_back({{"role", "user"}, {"content", "Question number " + std::to_string(i)}});
      const Json reply = Chat(*server, "edit", messages);
      EXPECT_EQ(reply["kvault"]["history"]["action"], "appended") << reply.dump();
      messages.push_back({{"role", "assistant"}, {"content", Reply(reply)}});
    }
    ASSERT_EQ(Listed(*server, "edit")["turns"], 11);
    Json edited(messages.begin(), messages.begin() + 4);  // turns 0-3, turn 3 edited
    edited[3]["content"] = "Question number one, asked differently";
    const Json reply = Chat(*server, "edit", edited);
    const Json history = reply["kvault"]["history"];
    EXPECT_EQ(history["action"], "replaced") << reply.dump();
    EXPECT_EQ(history["from_turn"], 3);
    EXPECT_EQ(history["archived_turns"], 8);
    EXPECT_EQ(history["archived_branch"], "branch-1");
    EXPECT_EQ(Listed(*server, "edit")["turns"], 5);
  }
  auto server = Start();  // the branch survives a restart
  ASSERT_TRUE(server->ok());
  const Json now = Get(*server, "/v1/conversations/edit/history");
  ASSERT_EQ(now["turns"].size(), 5u) << now.dump();
  EXPECT_EQ(now["turns"][3]["content"], "Question number one, asked differently");
  ASSERT_EQ(now["branches"].size(), 1u);
  EXPECT_EQ(now["branches"][0]["name"], "branch-1");
  const Json branch = Get(*server, "/v1/conversations/edit/history?branch=branch-1");
  ASSERT_EQ(branch["turns"].size(), 8u) << branch.dump();
  for (size_t i = 0; i < 8; ++i) {  // the old turns 3-10, exactly as they were
    EXPECT_EQ(branch["turns"][i]["turn"], 3 + static_cast<int>(i));
    EXPECT_EQ(branch["turns"][i]["content"], messages[3 + i]["content"]);
  }
  httplib::Result missing = Send(*server, "GET", "/v1/conversations/edit/history?branch=nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(HistoryTest, AClientThatResendsWhatItReceivedNeverReplacesHistory) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  Json messages = Json::array();
  for (int i = 0; i < 24; ++i) {  // the random model's replies include invalid UTF-8 at times
    messages.push_back({{"role", "user"}, {"content", "Tell me about item " + std::to_string(i)}});
    const Json reply = Chat(*server, "echo", messages, {{"max_tokens", 12}});
    ASSERT_EQ(reply["kvault"]["history"]["action"], "appended") << i << ": " << reply.dump();
    messages.push_back({{"role", "assistant"}, {"content", Reply(reply)}});
  }
  EXPECT_EQ(Listed(*server, "echo")["turns"], 48);
}

TEST_F(HistoryTest, AnUnansweredTurnIsRetriedNotStoredTwice) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  const Json system = {{"role", "system"}, {"content", "Be brief."}};
  Chat(*server, "retry", {system, {{"role", "user"}, {"content", "Hello"}}});
  ASSERT_EQ(Listed(*server, "retry")["turns"], 3);
  // A streamed reply the client walks away from: its question stays, unanswered.
  const Json question = {{"role", "user"}, {"content", "Tell me a long story."}};
  {
    httplib::Client client("127.0.0.1", server->port());
    httplib::Request request;
    request.method = "POST";
    request.path = "/v1/chat/completions";
    request.headers = {{"Authorization", std::string("Bearer ") + kKey}};
    request.set_header("Content-Type", "application/json");
    request.body = DumpJson({{"conversation_id", "retry"},
                             {"stream", true},
                             {"max_tokens", 400},
                             {"ignore_eos", true},
                             {"messages", {system, question}}});
    int chunks = 0;
    request.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      return ++chunks < 3;  // gone after the first pieces
    };
    client.send(request);
  }
  Json history;
  for (int i = 0; i < 100; ++i) {  // the server notices within a decode step
    history = Get(*server, "/v1/conversations/retry/history");
    if (history["unanswered_turn"] == 3) break;
    usleep(50 * 1000);
  }
  ASSERT_EQ(history["unanswered_turn"], 3) << history.dump();
  ASSERT_EQ(history["turns"].size(), 4u);
  const Json retried = Chat(*server, "retry", {system, question});
  EXPECT_EQ(retried["kvault"]["history"]["action"], "retried") << retried.dump();
  history = Get(*server, "/v1/conversations/retry/history");
  EXPECT_EQ(history["turns"].size(), 5u);  // the question once, then its reply
  EXPECT_TRUE(history["unanswered_turn"].is_null());
  EXPECT_EQ(history["turns"][4]["role"], "assistant");
}

TEST_F(HistoryTest, EveryRefusedChatRequestLeavesTheConversationAsItWas) {
  // One thread: one spare sequence to pin, taken by "pinned" below.
  auto server = Start({"--conversation-threads", "1", "--max-body-mb", "1"});
  ASSERT_TRUE(server->ok());
  const Json system = {{"role", "system"}, {"content", "Be brief."}};
  Chat(*server, "kept", {system, {{"role", "user"}, {"content", "Remember the word tulip."}}});
  Chat(*server, "pinned", {{{"role", "user"}, {"content", "Hi"}}}, {{"pin", true}});
  const Json before = Listed(*server, "kept");
  const Json history_before = Get(*server, "/v1/conversations/kept/history");
  const uintmax_t journal_before = JournalBytes();
  ASSERT_EQ(before["turns"], 3);

  const Json user = {{"role", "user"}, {"content", "And now?"}};
  auto body = [&](Json extra) {
    Json b = {{"conversation_id", "kept"}, {"messages", {system, user}}, {"max_tokens", 4}};
    b.update(extra);
    return DumpJson(b);
  };
  std::string words;
  for (int i = 0; i < 1500; ++i) words += "lengthy ";
  const std::vector<std::pair<std::string, int>> refused = {
      {"{not json", 400},
      {body({{"messages", Json::array()}}), 400},
      {body({{"messages", {system, {{"role", "wizard"}, {"content", "x"}}}}}), 400},
      {body({{"messages", {system, user, {{"role", "assistant"}, {"content", "y"}}}}}), 400},
      {body({{"messages", {system, {{"role", "user"}, {"content", 7}}}}}), 400},
      {body({{"max_tokens", 0}}), 400},
      {body({{"temperature", 5}}), 400},
      {body({{"n", 2}}), 400},
      {body({{"history", "merge"}}), 400},
      {body({{"grammar", "root ::= [z-a]"}}), 400},
      {body({{"grammar", "root ::= ((\"a\""}}), 400},
      {body({{"response_format", {{"type", "json_schema"}}}}), 400},
      {body({{"messages", {system, {{"role", "user"}, {"content", words}}}}}), 400},
      {body({{"pin", true}}), 409},
      {body({{"padding", std::string(2 << 20, 'x')}}), 413},
  };
  for (const auto& [request, status] : refused) {
    httplib::Result result = Send(*server, "POST", "/v1/chat/completions", request);
    ASSERT_TRUE(result) << request.substr(0, 200);
    EXPECT_EQ(result->status, status) << request.substr(0, 200) << " -> " << result->body;
    EXPECT_EQ(Listed(*server, "kept"), before) << request.substr(0, 200);
    EXPECT_EQ(JournalBytes(), journal_before) << request.substr(0, 200);
  }
  httplib::Result wrong_key =
      Send(*server, "POST", "/v1/chat/completions", body(Json::object()), "not-the-key");
  ASSERT_TRUE(wrong_key);
  EXPECT_EQ(wrong_key->status, 401);
  httplib::Result too_long =
      Send(*server, "POST", "/v1/chat/completions",
           body({{"messages", {system, {{"role", "user"}, {"content", words}}}}}));
  ASSERT_TRUE(too_long);
  EXPECT_EQ(ParseJson(too_long->body).value()["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(Get(*server, "/v1/conversations/kept/history"), history_before);
  EXPECT_EQ(JournalBytes(), journal_before);
  // A refused first request leaves no conversation behind.
  httplib::Result fresh =
      Send(*server, "POST", "/v1/chat/completions",
           DumpJson({{"conversation_id", "never"},
                     {"messages", {{{"role", "assistant"}, {"content", "x"}}}}}));
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->status, 400);
  EXPECT_TRUE(Listed(*server, "never").is_null());
}

TEST_F(HistoryTest, GrammarsThatBreakLlamaCppAreRefusedAndTheServerLives) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  const std::string deep =
      "root ::= " + std::string(100000, '(') + "\"a\"" + std::string(100000, ')');
  for (const std::string& grammar :
       {std::string("root ::= [z-a]"), std::string("root ::= \"x\" [b-a]"), deep}) {
    for (bool stream : {false, true}) {
      httplib::Result result =
          Send(*server, "POST", "/v1/chat/completions",
               DumpJson({{"messages", {{{"role", "user"}, {"content", "hello"}}}},
                         {"max_tokens", 4},
                         {"stream", stream},
                         {"grammar", grammar}}));
      ASSERT_TRUE(result) << grammar.substr(0, 40) << " killed the server:\n" << server->log();
      EXPECT_EQ(result->status, 400) << result->body;
      EXPECT_EQ(ParseJson(result->body).value()["error"]["code"], "invalid_grammar")
          << result->body;
      httplib::Result health = Send(*server, "GET", "/health");
      ASSERT_TRUE(health && health->status == 200);
    }
  }
  // A grammar that works still does.
  const Json ok = Post(*server, "/v1/chat/completions",
                       {{"messages", {{{"role", "user"}, {"content", "hello"}}}},
                        {"max_tokens", 4},
                        {"grammar", "root ::= \"yes\" | \"no\""}});
  const std::string text = Reply(ok);
  EXPECT_TRUE(text == "yes" || text == "no") << text;
}

}  // namespace
}  // namespace kvault::testing
