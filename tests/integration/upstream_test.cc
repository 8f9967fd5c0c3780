// kvault in front of a real llama-server (`kvault serve --upstream`, README "In front of
// another server"), built from the same llama.cpp source and started here with the test
// model: greedy replies through kvault equal llama-server's own for the same prompt, a long
// conversation's recalled fact is in the prompt llama-server received, a hedge closes the
// upstream's stream and continues it, and an upstream that dies, hangs or is not there yet
// gives clean errors, never lost turns.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>

#include "kvault/base/json.h"
#include "kvault/testing/llama_server.h"
#include "kvault/testing/planted_history.h"

namespace kvault::testing {
namespace {

class UpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (LlamaServer::BinaryPath().empty()) {
      GTEST_SKIP() << "no llama-server: `make llama-tools` builds it (make test does)";
    }
  }
  // One slot, so /slots names the prompt of the last request.
  static std::unique_ptr<LlamaServer> Upstream() {
    auto upstream = std::make_unique<LlamaServer>(
        TestModelPath(), std::vector<std::string>{"-c", "4096", "-np", "1"});
    EXPECT_TRUE(upstream->Start()) << upstream->log();
    return upstream;
  }
  static std::unique_ptr<ServerProcess> Kvault(const LlamaServer& upstream,
                                               std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--upstream", upstream.url(), "--tokenizer", TestModelPath()};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }
  static httplib::Result Send(int port, const std::string& path, const Json& body) {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(std::chrono::seconds(300));
    return client.Post(path, DumpJson(body), "application/json");
  }
  static Json Post(int port, const std::string& path, const Json& body, int expected = 200) {
    httplib::Result result = Send(port, path, body);
    EXPECT_TRUE(result) << path;
    if (!result) return Json();
    EXPECT_EQ(result->status, expected) << path << ": " << result->body.substr(0, 2000);
    return ParseJson(result->body).value_or(Json());
  }
  static Json Get(int port, const std::string& path) {
    httplib::Client client("127.0.0.1", port);
    httplib::Result result = client.Get(path);
    return result ? ParseJson(result->body).value_or(Json()) : Json();
  }
  // The text of every content delta of a chat stream, and its error events.
  static std::string StreamText(const std::string& body, std::vector<Json>* errors = nullptr) {
    std::string text;
    size_t pos = 0;
    while ((pos = body.find("data: ", pos)) != std::string::npos) {
      const size_t end = body.find("\n\n", pos);
      const std::string data = body.substr(pos + 6, end - pos - 6);
      pos = end;
      if (data == "[DONE]") continue;
      const Json event = ParseJson(data).value_or(Json());
      if (event.contains("error") && errors != nullptr) errors->push_back(event);
      if (!event.contains("choices") || event["choices"].empty()) continue;
      const Json& delta = event["choices"][0]["delta"];
      if (delta.contains("content") && delta["content"].is_string()) text += delta["content"];
    }
    return text;
  }
  // What the upstream's one slot last received, as text.
  static std::string UpstreamPrompt(const LlamaServer& upstream) {
    const Json slots = Get(upstream.port(), "/slots");
    if (!slots.is_array() || slots.empty() || !slots[0].contains("prompt")) return "";
    return slots[0]["prompt"].get<std::string>();
  }
};

TEST_F(UpstreamTest, GreedyRepliesEqualWhatLlamaServerAnswersDirectly) {
  auto upstream = Upstream();
  auto kvault = Kvault(*upstream);
  const Json request = {
      {"messages",
       {{{"role", "system"}, {"content", "You answer in one short sentence."}},
        {{"role", "user"}, {"content", "Which ships sail the northern sea in winter?"}}}},
      {"max_tokens", 24},
      {"temperature", 0},
      {"return_prompt", true}};
  const Json reply = Post(kvault->port(), "/v1/chat/completions", request);
  const std::string prompt = reply["kvault"]["prompt"];
  const Json direct = Post(upstream->port(), "/completion",
                           {{"prompt", prompt}, {"n_predict", 24}, {"temperature", 0}});
  ASSERT_TRUE(direct.contains("content")) << direct.dump();
  EXPECT_EQ(reply["choices"][0]["message"]["content"], direct["content"]) << reply.dump();
  EXPECT_EQ(reply["usage"]["completion_tokens"], 24);
  EXPECT_EQ(reply["model"], Get(kvault->port(), "/v1/models")["data"][0]["id"]);

  Json streamed = request;
  streamed["stream"] = true;
  httplib::Result stream = Send(kvault->port(), "/v1/chat/completions", streamed);
  ASSERT_TRUE(stream && stream->status == 200);
  EXPECT_EQ(StreamText(stream->body), direct["content"].get<std::string>());
  EXPECT_NE(stream->body.find("data: [DONE]"), std::string::npos);

  // A completion (no template) continues the same text the same way.
  const Json completion = Post(kvault->port(), "/v1/completions",
                               {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}});
  EXPECT_EQ(completion["choices"][0]["text"], direct["content"]) << completion.dump();

  const Json health = Get(kvault->port(), "/health");
  EXPECT_EQ(health["upstream"]["status"], "ok") << health["upstream"].dump();
  EXPECT_EQ(health["upstream"]["url"], upstream->url());
}

TEST_F(UpstreamTest, AFactFarBeyondTheWindowIsInThePromptTheUpstreamReceived) {
  auto upstream = Upstream();
  // kvault's window is the upstream's whole context (4,096 cells in its one slot).
  auto kvault = Kvault(*upstream, {"--window", "4096"});
  const Json appended = Post(kvault->port(), "/v1/conversations/append",
                             {{"conversation_id", "long"}, {"messages", PlantedHistory(1200, 40)}});
  ASSERT_GT(appended["new_tokens"].get<int64_t>(), 50000) << appended.dump();
  const auto ask = [&](const std::string& question) {
    return Post(kvault->port(), "/v1/chat/completions",
                {{"conversation_id", "long"},
                 {"messages", {{{"role", "user"}, {"content", question}}}},
                 {"max_tokens", 8},
                 {"temperature", 0}});
  };
  const Json reply = ask(kPlantedQuestion);
  EXPECT_GE(reply["kvault"]["recalled_chunks"].get<int64_t>(), 1) << reply.dump();
  const std::string received = UpstreamPrompt(*upstream);
  EXPECT_NE(received.find("4721"), std::string::npos) << received.substr(0, 3000);
  EXPECT_NE(received.find("[recalled from turn"), std::string::npos);
  EXPECT_LE(reply["usage"]["prompt_tokens"].get<int64_t>(), 4096);

  // Follow-ups: the window's start stays the same, so the upstream's prefix cache serves it.
  for (const char* question : {"Thanks. And what else happened?", "Tell me more, please."}) {
    const Json next = ask(question);
    const int64_t prompt = next["usage"]["prompt_tokens"];
    const int64_t cached = next["usage"]["prompt_tokens_details"]["cached_tokens"];
    EXPECT_EQ(next["kvault"]["cache_source"], "upstream") << next.dump();
    std::fprintf(stderr, "follow-up: %lld of %lld prompt tokens cached upstream\n",
                 static_cast<long long>(cached), static_cast<long long>(prompt));
    EXPECT_GE(cached * 10, prompt * 9) << next.dump();
  }
}

// As long_memory_test's hedge test, through the upstream: the grammar (llama-server's
// `grammar`) forces "Well, if I recall, the code is 7."; the hedge detector holds "if I
// recall" back and closes the upstream's stream after "Well, "; the rebuilt prompt ends with
// the reply so far and the upstream continues it. The client's stream is exactly N + 1 times
// "Well, " and then the rest.
TEST_F(UpstreamTest, AHedgeClosesTheUpstreamStreamRecallsAndContinues) {
  auto upstream = Upstream();
  auto kvault = Kvault(*upstream, {"--window", "2048", "--max-recalls", "1"});
  Post(kvault->port(), "/v1/conversations/append",
       {{"conversation_id", "long"}, {"messages", PlantedHistory(400, 20)}});
  httplib::Result stream = Send(kvault->port(), "/v1/chat/completions",
                                {{"conversation_id", "long"},
                                 {"messages", {{{"role", "user"}, {"content", kPlantedQuestion}}}},
                                 {"grammar", "root ::= \"Well, if I recall, the code is 7.\""},
                                 {"max_tokens", 64},
                                 {"temperature", 0},
                                 {"stream", true}});
  ASSERT_TRUE(stream && stream->status == 200);
  EXPECT_EQ(StreamText(stream->body), "Well, Well, if I recall, the code is 7.");
  EXPECT_NE(kvault->log().find("the reply hedged"), std::string::npos);
  const Json history = Get(kvault->port(), "/v1/conversations/long/history?limit=2");
  ASSERT_FALSE(history["turns"].empty()) << history.dump();
  EXPECT_EQ(history["turns"].back()["content"], "Well, Well, if I recall, the code is 7.");
}

TEST_F(UpstreamTest, AnUpstreamThatDiesHangsOrIsNotThereGivesCleanErrors) {
  auto upstream = std::make_unique<LlamaServer>(TestModelPath(),
                                                std::vector<std::string>{"-c", "4096", "-np", "1"});
  // Not there yet: kvault starts anyway and says so.
  auto kvault = Kvault(*upstream, {"--upstream-timeout", "1"});
  EXPECT_EQ(Get(kvault->port(), "/health")["upstream"]["status"], "down");
  const Json chat = {{"conversation_id", "c"},
                     {"messages", {{{"role", "user"}, {"content", "Hello, who are you?"}}}},
                     {"max_tokens", 8},
                     {"temperature", 0}};
  const Json refused = Post(kvault->port(), "/v1/chat/completions", chat, 502);
  EXPECT_EQ(refused["error"]["code"], "upstream_unavailable") << refused.dump();
  ASSERT_TRUE(upstream->Start()) << upstream->log();
  Post(kvault->port(), "/v1/chat/completions", chat);  // the retry answers the stored question
  EXPECT_EQ(Get(kvault->port(), "/health")["upstream"]["status"], "ok");
  const size_t turns = Get(kvault->port(), "/v1/conversations/c/history")["turns"].size();
  EXPECT_EQ(turns, 2u);

  // Killed mid-stream: an error event ends the client's stream; the turns stay.
  Json streamed = {{"conversation_id", "c"},
                   {"messages", {{{"role", "user"}, {"content", "Tell me a long story."}}}},
                   {"max_tokens", 3000},
                   {"ignore_eos", true},
                   {"temperature", 0},
                   {"stream", true}};
  httplib::Client client("127.0.0.1", kvault->port());
  client.set_read_timeout(std::chrono::seconds(60));
  std::string body;
  bool killed = false;
  httplib::Result result =
      client.Post("/v1/chat/completions", httplib::Headers{}, DumpJson(streamed),
                  "application/json", [&](const char* data, size_t n) {
                    body.append(data, n);
                    if (!killed && StreamText(body).size() > 8) {
                      killed = true;
                      upstream->Stop();
                    }
                    return true;
                  });
  ASSERT_TRUE(result);
  EXPECT_TRUE(killed) << body.substr(0, 500);
  std::vector<Json> errors;
  StreamText(body, &errors);
  ASSERT_EQ(errors.size(), 1u) << body.substr(body.size() > 800 ? body.size() - 800 : 0);
  EXPECT_EQ(errors[0]["error"]["code"], "upstream_unavailable");
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos);
  const Json history = Get(kvault->port(), "/v1/conversations/c/history");
  EXPECT_EQ(history["turns"].size(), 3u) << history.dump();  // the question, unanswered
  EXPECT_EQ(Get(kvault->port(), "/health")["upstream"]["status"], "down");

  // Hung (stopped, its socket open): 504 after --upstream-timeout, not a hang.
  ASSERT_TRUE(upstream->Start());
  Post(kvault->port(), "/v1/chat/completions", chat);
  upstream->Pause();
  const auto start = std::chrono::steady_clock::now();
  const Json hung = Post(kvault->port(), "/v1/chat/completions", chat, 504);
  EXPECT_EQ(hung["error"]["code"], "upstream_timeout") << hung.dump();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  upstream->Resume();
}

// Analytics (one row per answered request; the summaries equal a recomputation from the
// rows), the prompt trie's tree view, and normalisation: two prompts that differ only in an
// injected date share their whole prefix with the rule, not without it.
TEST_F(UpstreamTest, AnalyticsRowsSummariesAndNormalisedPrefixes) {
  const std::string rules = ::testing::TempDir() + "kvault_normalize_rules.json";
  {
    std::ofstream out(rules);
    out << R"json([{"pattern": "Today is [0-9]{4}-[0-9]{2}-[0-9]{2}[.]", "placeholder": "Today is <date>."}])json";
  }
  auto upstream = Upstream();
  std::string guidance;
  for (int i = 0; i < 12; ++i) {
    guidance += " Rule " + std::to_string(i) + ": answer briefly, cite the log entry, stay calm.";
  }
  const auto chat = [&](int port, int day, const std::string& conversation) {
    Json body = {{"messages",
                  {{{"role", "system"},
                    {"content", "Today is 2026-12-0" + std::to_string(day) + "." + guidance}},
                   {{"role", "user"}, {"content", "Question number " + std::to_string(day)}}}},
                 {"max_tokens", 4},
                 {"temperature", 0}};
    if (!conversation.empty()) body["conversation_id"] = conversation;
    return Post(port, "/v1/chat/completions", body);
  };
  for (bool normalized : {false, true}) {
    std::vector<std::string> extra;
    if (normalized) extra = {"--normalize-rules", rules};
    auto kvault = Kvault(*upstream, extra);
    ASSERT_TRUE(kvault->ok());
    const int n = 6;
    for (int i = 1; i <= n; ++i) chat(kvault->port(), i, i <= 2 ? "c" + std::to_string(i) : "");
    const Json rows = Get(kvault->port(), "/v1/analytics/requests");
    ASSERT_EQ(rows["data"].size(), static_cast<size_t>(n)) << rows.dump();
    const Json& second = rows["data"][1];
    const int64_t prompt = second["prompt_tokens"];
    if (!normalized) {
      // The dates differ 3 tokens in: only the chat template's start was seen before.
      EXPECT_LT(second["trie_matched_tokens"].get<int64_t>(), 32) << second.dump();
      continue;
    }
    EXPECT_GE(second["trie_matched_tokens"].get<int64_t>() * 10, prompt * 8) << second.dump();
    EXPECT_GE(second["cached_tokens"].get<int64_t>() * 10, prompt * 8) << second.dump();

    // The summary is the rows, summed and ranked.
    int64_t prompt_sum = 0, cached_sum = 0, matched_sum = 0;
    std::vector<double> ttft;
    for (const Json& row : rows["data"]) {
      prompt_sum += row["prompt_tokens"].get<int64_t>();
      cached_sum += row["cached_tokens"].get<int64_t>();
      matched_sum += row["trie_matched_tokens"].get<int64_t>();
      ttft.push_back(row["ttft_ms"].get<double>());
    }
    std::sort(ttft.begin(), ttft.end());
    const Json all = Get(kvault->port(), "/v1/analytics");
    ASSERT_EQ(all["data"].size(), 1u) << all.dump();
    const Json& summary = all["data"][0];
    EXPECT_EQ(summary["requests"], n);
    EXPECT_EQ(summary["prompt_tokens"], prompt_sum);
    EXPECT_EQ(summary["cached_tokens"], cached_sum);
    EXPECT_EQ(summary["trie_matched_tokens"], matched_sum);
    EXPECT_DOUBLE_EQ(summary["cache_hit_rate"].get<double>(),
                     static_cast<double>(cached_sum) / static_cast<double>(prompt_sum));
    EXPECT_DOUBLE_EQ(summary["ttft_ms"]["p50"].get<double>(), ttft[2]);  // nearest rank of 6
    EXPECT_DOUBLE_EQ(summary["ttft_ms"]["p99"].get<double>(), ttft[5]);
    const Json by = Get(kvault->port(), "/v1/analytics?group_by=conversation");
    ASSERT_EQ(by["data"].size(), 3u) << by.dump();  // "", c1, c2
    EXPECT_EQ(by["data"][0]["requests"], n - 2);
    EXPECT_EQ(Get(kvault->port(), "/v1/analytics?group_by=prefix")["data"].size(), 1u);
    EXPECT_EQ(Get(kvault->port(), "/v1/analytics?group_by=week")["error"]["code"],
              "invalid_request");

    // The prompt trie's view: the shared system prompt, seen n times.
    const Json tree = Get(kvault->port(), "/v1/cache/tree");
    ASSERT_FALSE(tree["prompts"]["hot"].empty()) << tree.dump();
    EXPECT_EQ(tree["prompts"]["hot"][0]["count"], n);
    EXPECT_NE(tree["prompts"]["hot"][0]["head"].get<std::string>().find("<date>"),
              std::string::npos)
        << tree.dump();
  }
  std::filesystem::remove(rules);
}

}  // namespace
}  // namespace kvault::testing
