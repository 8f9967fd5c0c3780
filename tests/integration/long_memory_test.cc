// End to end, long-conversation memory over HTTP: a history far beyond the window, appended
// in bulk; search finds a planted fact with its turns; a question about it gets the fact
// recalled into its prompt (and not with "recall": false); a hedge in the reply triggers
// mid-generation recall and the client receives exactly the documented stream; a reconnecting
// client's resent history costs only its new turn; all of it survives a restart.
#include <filesystem>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/json.h"
#include "kvault/testing/planted_history.h"

namespace kvault::testing {
namespace {

class LongMemoryTest : public ::testing::Test {
 protected:
  LongMemoryTest() {
    char pattern[] = "/tmp/kvault_memory_XXXXXX";
    dir_ = ::mkdtemp(pattern);
  }
  ~LongMemoryTest() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<ServerProcess> Start(std::vector<std::string> args = {}) {
    args.insert(args.begin(), {"--model", TestModelPath(), "--window", "4096", "--cache-dir",
                               dir_ + "/blocks", "--data-dir", dir_ + "/data"});
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }

  static Json Post(const ServerProcess& server, const std::string& path, const Json& body,
                   int expect_status = 200) {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(300));
    httplib::Result result = client.Post(path, DumpJson(body), "application/json");
    EXPECT_TRUE(result) << path;
    if (!result) return Json();
    EXPECT_EQ(result->status, expect_status) << result->body.substr(0, 2000);
    return ParseJson(result->body).value_or(Json());
  }

  static Json Ask(const ServerProcess& server, Json extra = Json::object()) {
    Json body = {{"conversation_id", "long"},
                 {"messages", {{{"role", "user"}, {"content", kPlantedQuestion}}}},
                 {"max_tokens", 8},
                 {"temperature", 0}};
    body.update(extra);
    return Post(server, "/v1/chat/completions", body);
  }

  std::string dir_;
};

TEST_F(LongMemoryTest, APlantedFactIsFoundAndRecalledFromFarBeyondTheWindow) {
  auto server = Start();
  const Json appended = Post(*server, "/v1/conversations/append",
                             {{"conversation_id", "long"}, {"messages", PlantedHistory(1200, 40)}});
  EXPECT_EQ(appended["new_turns"], 1201);
  EXPECT_GT(appended["new_tokens"].get<int64_t>(), 50000);

  const Json found = Post(*server, "/v1/conversations/search",
                          {{"conversation_id", "long"}, {"query", kPlantedQuestion}, {"k", 3}});
  ASSERT_FALSE(found["results"].empty()) << found.dump();
  const Json& best = found["results"][0];
  EXPECT_NE(best["text"].get<std::string>().find("4721"), std::string::npos) << best.dump();
  // Turn numbers count messages from 0: the system message is 0, the fact is message 41.
  EXPECT_LE(best["first_turn"].get<int64_t>(), 41);
  EXPECT_GE(best["last_turn"].get<int64_t>(), 41);
  EXPECT_GT(best["score"].get<double>(), 0);

  const Json reply = Ask(*server);
  EXPECT_GE(reply["kvault"]["recalled_chunks"].get<int64_t>(), 1) << reply.dump();
  EXPECT_LE(reply["usage"]["prompt_tokens"].get<int64_t>(), 4096);
  const Json unrecalled = Ask(*server, {{"recall", false}});
  EXPECT_EQ(unrecalled["kvault"]["recalled_chunks"].get<int64_t>(), 0) << unrecalled.dump();

  // Listed with its size; 404 and 400 where they belong.
  const Json list = Post(*server, "/v1/conversations/list", Json::object());
  ASSERT_EQ(list["conversations"].size(), 1u);
  EXPECT_GT(list["conversations"][0]["tokens"].get<int64_t>(), 50000);
  EXPECT_GT(list["conversations"][0]["index_entries"].get<int64_t>(), 300);
  Post(*server, "/v1/conversations/search", {{"conversation_id", "nobody"}, {"query", "x"}}, 404);
  Post(*server, "/v1/conversations/search", {{"conversation_id", "long"}}, 400);
  Post(*server, "/v1/conversations/append", {{"conversation_id", "long"}}, 400);

  // After a restart the history, its index and the recall are all still there.
  EXPECT_EQ(server->Terminate(), 0);
  server = Start();
  const Json again = Post(*server, "/v1/conversations/search",
                          {{"conversation_id", "long"}, {"query", kPlantedQuestion}, {"k", 3}});
  ASSERT_FALSE(again["results"].empty());
  EXPECT_EQ(again["results"][0]["text"], best["text"]);
  EXPECT_GE(Ask(*server)["kvault"]["recalled_chunks"].get<int64_t>(), 1);
}

TEST_F(LongMemoryTest, AReconnectingClientPaysOnlyForItsNewTurn) {
  auto server = Start();
  Json history = PlantedHistory(300, 10);
  history.push_back({{"role", "user"}, {"content", kPlantedQuestion}});
  const Json first = Post(
      *server, "/v1/chat/completions",
      {{"conversation_id", "re"}, {"messages", history}, {"max_tokens", 4}, {"temperature", 0}});
  const std::string reply = first["choices"][0]["message"]["content"].get<std::string>();
  history.push_back({{"role", "assistant"}, {"content", reply}});
  history.push_back({{"role", "user"}, {"content", "And the red one?"}});
  const Json appended =
      Post(*server, "/v1/conversations/append", {{"conversation_id", "re"}, {"messages", history}});
  EXPECT_EQ(appended["new_turns"], 1) << appended.dump();
  EXPECT_FALSE(appended["replaced_history"].get<bool>());
  EXPECT_LT(appended["new_tokens"].get<int64_t>(), 20);
}

// The grammar forces the reply "Well, if I recall, the code is 7.". The hedge detector holds
// "if I recall" back and stops the sequence after "Well, ": the client has received "Well, ".
// The prompt is rebuilt with chunks recalled for the question and "Well, ", and generation
// resumes after "Well, ". The grammar starts over and forces the same text: "Well, " is sent
// again before the next hedge. After --max-recalls recalls the last round runs without the
// detector. So with max_recalls = N the client receives exactly N + 1 times "Well, ", then
// "if I recall, the code is 7.", never a piece of the phrase before that.
TEST_F(LongMemoryTest, AHedgeStopsRecallsAndResumesAsOneStream) {
  for (int max_recalls : {1, 2}) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    // The second run recalls chunks as their tokens (--recall-kv reuse; the appended history
    // has no kept KV, so they are prefilled): the stream is the same.
    std::vector<std::string> args = {"--max-recalls", std::to_string(max_recalls)};
    if (max_recalls == 2) args.insert(args.end(), {"--recall-kv", "reuse"});
    auto server = Start(args);
    Post(*server, "/v1/conversations/append",
         {{"conversation_id", "long"}, {"messages", PlantedHistory(400, 20)}});
    const Json reply = Ask(*server, {{"grammar", "root ::= \"Well, if I recall, the code is 7.\""},
                                     {"max_tokens", 64}});
    std::string expected;
    for (int i = 0; i <= max_recalls; ++i) expected += "Well, ";
    expected += "if I recall, the code is 7.";
    EXPECT_EQ(reply["choices"][0]["message"]["content"], expected) << reply.dump();
    const Json& recalls = reply["kvault"]["mid_generation_recalls"];
    ASSERT_EQ(recalls.size(), static_cast<size_t>(max_recalls)) << reply.dump();
    EXPECT_EQ(recalls[0]["phrase"], "if i recall");
    // The search for the question and the reply so far brought the fact's turn back.
    bool fact_recalled = false;
    for (const Json& turn : recalls[0]["turns"]) {
      fact_recalled = fact_recalled || (turn.get<int64_t>() <= 21 && turn.get<int64_t>() >= 15);
    }
    EXPECT_TRUE(fact_recalled) << reply.dump();
    EXPECT_NE(server->log().find("the reply hedged"), std::string::npos);
  }
}

// Recalled history as KV (conversation/recall_kv.h): a fact said in live turns, whose KV was
// therefore computed in a window and kept, then pushed far out of the window, comes back as
// its own tokens (chat-template tokens included) with its KV put back rather than prefilled;
// with --recall-kv off the same chunk is prefilled as text. Counted in the response,
// /v1/cache/stats and /metrics, and still so after a restart.
TEST_F(LongMemoryTest, RecalledChunksComeBackAsKvNotPrefill) {
  const Json history = PlantedHistory(80, 2);
  for (const std::string mode : {"reuse", "off"}) {
    SCOPED_TRACE("--recall-kv " + mode);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto start = [&] {
      auto server = std::make_unique<ServerProcess>(std::vector<std::string>{
          "--model", TestModelPath(), "--window", "1024", "--recall-kv", mode, "--cache-dir",
          dir_ + "/blocks", "--data-dir", dir_ + "/data"});
      EXPECT_TRUE(server->ok()) << server->log();
      return server;
    };
    auto server = start();
    // Live turns: the system prompt, then user messages one by one (the server answers each),
    // the fact among them; each checkpoint keeps the spans its window held.
    for (size_t i = 1; i <= 15; i += 2) {
      Json messages = Json::array();
      if (i == 1) messages.push_back(history[0]);
      messages.push_back(history[i]);
      Post(*server, "/v1/chat/completions",
           {{"conversation_id", "kv"},
            {"messages", messages},
            {"max_tokens", 4},
            {"temperature", 0}});
    }
    // Then thousands of tokens more, appended: the fact is deep in the fog.
    Json rest = Json::array();
    for (size_t i = 17; i < history.size(); ++i) rest.push_back(history[i]);
    Post(*server, "/v1/conversations/append",
         {{"conversation_id", "kv"}, {"messages", rest}, {"history", "append"}});
    auto ask = [&] {
      return Post(*server, "/v1/chat/completions",
                  {{"conversation_id", "kv"},
                   {"messages", {{{"role", "user"}, {"content", kPlantedQuestion}}}},
                   {"max_tokens", 4},
                   {"temperature", 0},
                   {"return_prompt", true}});
    };
    const Json reply = ask();
    ASSERT_GE(reply["kvault"]["recalled_chunks"].get<int64_t>(), 1) << reply.dump();
    const Json& kv = reply["kvault"]["recall_kv"];
    const std::string prompt = reply["kvault"]["prompt"].get<std::string>();
    const size_t recall_at = prompt.find("Excerpts recalled");
    ASSERT_NE(recall_at, std::string::npos);
    // As its own tokens, the chunk shows its turn's template; as text, it does not.
    const size_t fact_as_tokens =
        prompt.find(std::string("<|im_start|>user\n") + kPlantedFact, recall_at);
    if (mode == "reuse") {
      EXPECT_GE(kv["materialized_chunks"].get<int64_t>(), 1) << reply.dump();
      EXPECT_GE(kv["materialized_tokens"].get<int64_t>(), 64) << reply.dump();
      EXPECT_FALSE(kv.contains("refused")) << reply.dump();
      EXPECT_NE(fact_as_tokens, std::string::npos) << prompt.substr(recall_at, 2000);
    } else {
      EXPECT_EQ(kv["materialized_tokens"].get<int64_t>(), 0) << reply.dump();
      EXPECT_GE(kv["prefilled_tokens"].get<int64_t>(), 64) << reply.dump();
      EXPECT_EQ(kv["refused"], "--recall-kv off");
      EXPECT_EQ(fact_as_tokens, std::string::npos);
      EXPECT_NE(prompt.find("4721", recall_at), std::string::npos);
    }
    httplib::Client client("127.0.0.1", server->port());
    const Json stats = ParseJson(client.Get("/v1/cache/stats")->body).value()["recall_kv"];
    EXPECT_EQ(stats["mode"], mode);
    EXPECT_EQ(stats["materialized_tokens"], kv["materialized_tokens"]) << stats.dump();
    const std::string metrics = client.Get("/metrics")->body;
    EXPECT_NE(metrics.find("kvault_recall_kv_tokens_total{how=\"materialized\"}"),
              std::string::npos);
    if (mode == "off") {
      EXPECT_EQ(stats["kept_spans"], 0);  // nothing is kept that could not be used
      continue;
    }
    EXPECT_GE(stats["kept_spans"].get<int64_t>(), 2) << stats.dump();
    EXPECT_GT(stats["kept_bytes_per_token"].get<double>(), 0);
    // The kept KV is on disk: after a restart the chunk is materialized again.
    EXPECT_EQ(server->Terminate(), 0);
    server = start();
    const Json again = ask();
    EXPECT_GE(again["kvault"]["recall_kv"]["materialized_chunks"].get<int64_t>(), 1)
        << again.dump();
  }
}

}  // namespace
}  // namespace kvault::testing
