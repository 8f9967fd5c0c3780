// Several replicas sharing one real redis-server (README "Running several replicas"): any
// replica continues any conversation with its KV from Redis, replicas share a system prompt's
// blocks, one writer per conversation, Redis outages cost nothing but the sharing, and API
// keys stay isolated across replicas.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/server_process.h"
#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include "kvault/base/json.h"
#include "kvault/testing/redis_server.h"

namespace kvault::testing {
namespace {

const std::string kSystem =
    "You are the archivist of a long-running research station. You remember every log entry "
    "the crew dictates and answer questions about them precisely, never inventing entries.";
// A conversation of a dozen log entries, then a question: the history dwarfs the new
// message, as in a long conversation.
const std::vector<std::string> kTurns = {
    "Entry one: Mara calibrated the anemometer on Monday under clear skies.",
    "Entry two: Ivo repaired the radio mast on Tuesday in heavy fog.",
    "Entry three: the greenhouse lamps were replaced on Wednesday by Tomas.",
    "Entry four: Mara logged a seismic tremor of magnitude two on Thursday morning.",
    "Entry five: the rover's left wheel was swapped by Ivo after the dust storm.",
    "Entry six: supplies arrived on Friday; the coffee ration was doubled.",
    "Entry seven: Tomas found a crack in the north dome and sealed it with resin.",
    "Entry eight: the weather balloon reached thirty kilometres before it burst.",
    "Entry nine: Mara and Ivo played chess; the game was drawn after sixty moves.",
    "Entry ten: the water recycler was cleaned and its filters replaced on Sunday.",
    "Ivo: when?"};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!RedisServer::Available()) GTEST_SKIP() << "redis-server is not installed";
    ASSERT_TRUE(redis_.Start());
  }
  std::unique_ptr<ServerProcess> Replica(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--model",           TestModelPath(), "--remote-url",
                                     redis_.url(),        "--block-size",  "32",
                                     "--remote-lease-ms", "2000"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }
  static Json Post(const ServerProcess& server, const std::string& path, const Json& body,
                   const httplib::Headers& headers = {}, int expected = 200) {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(120));
    httplib::Result result = client.Post(path, headers, DumpJson(body), "application/json");
    EXPECT_TRUE(result) << path;
    if (!result) return Json();
    EXPECT_EQ(result->status, expected) << path << ": " << result->body;
    return ParseJson(result->body).value_or(Json());
  }
  static Json Get(const ServerProcess& server, const std::string& path,
                  const httplib::Headers& headers = {}) {
    httplib::Client client("127.0.0.1", server.port());
    httplib::Result result = client.Get(path, headers);
    return result ? ParseJson(result->body).value_or(Json()) : Json();
  }
  // One turn, sent as many clients do: the system prompt and the new message.
  static Json Turn(const ServerProcess& server, const std::string& id, const std::string& user,
                   const httplib::Headers& headers = {}) {
    return Post(
        server, "/v1/chat/completions",
        {{"conversation_id", id},
         {"messages",
          {{{"role", "system"}, {"content", kSystem}}, {{"role", "user"}, {"content", user}}}},
         {"max_tokens", 8},
         {"temperature", 0}},
        headers);
  }
  static std::string Text(const Json& reply) {
    return reply["choices"][0]["message"]["content"].get<std::string>();
  }
  RedisServer redis_;
};

TEST_F(ClusterTest, AConversationContinuesOnAnotherReplicaAfterKillNine) {
  // The reference: the same turns on one replica that is never interrupted.
  std::string uninterrupted;
  {
    ServerProcess alone({"--model", TestModelPath(), "--block-size", "32"});
    ASSERT_TRUE(alone.ok()) << alone.log();
    for (const std::string& turn : kTurns) uninterrupted = Text(Turn(alone, "c1", turn));
  }
  auto a = Replica();
  auto b = Replica();
  ASSERT_TRUE(a->ok() && b->ok());
  for (size_t i = 0; i + 1 < kTurns.size(); ++i) Turn(*a, "c1", kTurns[i]);
  ::kill(a->pid(), SIGKILL);
  const Json reply = Turn(*b, "c1", kTurns.back());
  const int64_t prompt = reply["usage"]["prompt_tokens"].get<int64_t>();
  const int64_t cached = reply["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
  EXPECT_EQ(reply["kvault"]["cache_source"], "remote") << reply.dump();
  EXPECT_GE(cached * 10, prompt * 9) << cached << " of " << prompt;
  EXPECT_EQ(Text(reply), uninterrupted);
  // Every turn A acknowledged is in B's history, and B's turn after them.
  const Json history = Get(*b, "/v1/conversations/c1/history");
  EXPECT_EQ(history["turns"].size(), 1 + 2 * kTurns.size()) << history.dump();
  const Json health = Get(*b, "/health");
  EXPECT_EQ(health["remote"]["status"], "ok");
  EXPECT_EQ(health["remote"]["adopted_conversations"], 1);
}

TEST_F(ClusterTest, TheSecondReplicaRestoresASharedSystemPromptFromRedis) {
  std::string system = "You are the station's archivist.";
  while (system.size() < 4000) system += " Entries have a date, an author and a weather note.";
  const Json ask = {
      {"messages",
       {{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", "Hi"}}}},
      {"max_tokens", 2}};
  auto a = Replica();
  ASSERT_TRUE(a->ok());
  const Json first = Post(*a, "/v1/chat/completions", ask);
  ASSERT_GT(first["usage"]["prompt_tokens"].get<int64_t>(), 700);
  // Blocks are written behind the request: wait until A has handed them over.
  for (int i = 0; i < 50; ++i) {
    const Json stats = Get(*a, "/v1/cache/stats");
    if (stats["tiers"]["remote"]["blocks"].get<int64_t>() >=
        first["usage"]["prompt_tokens"].get<int64_t>() / 32) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto b = Replica();
  ASSERT_TRUE(b->ok());
  Json other = ask;
  other["messages"][1]["content"] = "Hello there";
  const Json second = Post(*b, "/v1/chat/completions", other);
  EXPECT_EQ(second["kvault"]["cache_source"], "remote") << second.dump();
  EXPECT_GE(second["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>(),
            first["usage"]["prompt_tokens"].get<int64_t>() - 40);
  EXPECT_GT(Get(*b, "/v1/cache/stats")["tiers"]["remote"]["hits"].get<int64_t>(), 0);
}

TEST_F(ClusterTest, TwoReplicasRacingOnOneConversationNeverInterleaveTurns) {
  auto a = Replica();
  auto b = Replica();
  ASSERT_TRUE(a->ok() && b->ok());
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 6; ++i) {
    clients.emplace_back([&, i] {
      const ServerProcess& server = i % 2 == 0 ? *a : *b;
      httplib::Client client("127.0.0.1", server.port());
      client.set_read_timeout(std::chrono::seconds(120));
      const Json body = {{"conversation_id", "race"},
                         {"messages",
                          {{{"role", "system"}, {"content", kSystem}},
                           {{"role", "user"}, {"content", "Entry " + std::to_string(i)}}}},
                         {"max_tokens", 4},
                         {"temperature", 0}};
      httplib::Result result =
          client.Post("/v1/chat/completions", DumpJson(body), "application/json");
      if (result && result->status == 200) ++ok;
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), 6);
  // Whichever replica answered last holds the whole conversation: a system turn, then user
  // and assistant alternating, every entry once.
  auto c = Replica();
  ASSERT_TRUE(c->ok());
  const Json last = Turn(*c, "race", "How many entries?");
  const Json history = Get(*c, "/v1/conversations/race/history");
  ASSERT_EQ(history["turns"].size(), 1u + 2 * 7) << history.dump();
  std::vector<int> seen(6, 0);
  for (size_t t = 1; t < history["turns"].size(); ++t) {
    EXPECT_EQ(history["turns"][t]["role"], t % 2 == 1 ? "user" : "assistant") << t;
    const std::string content = history["turns"][t]["content"];
    if (t % 2 == 1 && content.starts_with("Entry ")) ++seen[std::stoi(content.substr(6))];
  }
  for (int i = 0; i < 6; ++i) EXPECT_EQ(seen[i], 1) << "entry " << i;
}

// Append, history and search go through the lease and adoption too: a conversation appended
// on A is read, searched and appended to on B, and A then sees B's turns.
TEST_F(ClusterTest, AppendReadAndSearchWorkOnAnyReplica) {
  auto a = Replica();
  auto b = Replica();
  ASSERT_TRUE(a->ok() && b->ok());
  Json messages = Json::array();
  for (size_t i = 0; i + 1 < kTurns.size(); ++i) {
    messages.push_back({{"role", i % 2 == 0 ? "user" : "assistant"}, {"content", kTurns[i]}});
  }
  Post(*a, "/v1/conversations/append", {{"conversation_id", "log"}, {"messages", messages}});
  EXPECT_EQ(Get(*b, "/v1/conversations/log/history")["turns"].size(), messages.size());
  const Json found = Post(*b, "/v1/conversations/search",
                          {{"conversation_id", "log"}, {"query", "seismic tremor"}, {"k", 1}});
  ASSERT_EQ(found["results"].size(), 1u) << found.dump();
  EXPECT_NE(found["results"][0]["text"].get<std::string>().find("tremor"), std::string::npos);
  Post(*b, "/v1/conversations/append",
       {{"conversation_id", "log"},
        {"messages", {{{"role", "user"}, {"content", "Entry eleven: all quiet."}}}}});
  EXPECT_EQ(Get(*a, "/v1/conversations/log/history")["turns"].size(), messages.size() + 1);
  httplib::Client client("127.0.0.1", b->port());
  httplib::Result missing = client.Get("/v1/conversations/nowhere/history");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

// Another replica's lease (here one that paused mid-turn, as a stopped process holds it)
// is waited for within the request's --queue-timeout, then answered 409; once the lease
// expires, the conversation continues here.
TEST_F(ClusterTest, ALeaseHeldBeyondTheQueueTimeoutAnswers409ThenExpires) {
  auto a = Replica();
  auto b = Replica({"--queue-timeout", "0.5"});
  ASSERT_TRUE(a->ok() && b->ok());
  Turn(*a, "busy", kTurns[0]);
  // The conversation's fence key names its hash; its lease is taken as a replica would.
  const ProcessResult keys = RunProcess({"/usr/bin/redis-cli", "-p", std::to_string(redis_.port()),
                                         "--scan", "--pattern", "kvault:fence:*"});
  ASSERT_EQ(keys.exit_code, 0) << keys.err;
  const std::string hash = keys.out.substr(std::string("kvault:fence:").size(), 32);
  const ProcessResult held =
      RunProcess({"/usr/bin/redis-cli", "-p", std::to_string(redis_.port()), "SET",
                  "kvault:lease:" + hash, "paused-replica:999", "PX", "2500"});
  ASSERT_EQ(held.exit_code, 0) << held.err;

  const auto start = std::chrono::steady_clock::now();
  const Json busy = Post(*b, "/v1/chat/completions",
                         {{"conversation_id", "busy"},
                          {"messages", {{{"role", "user"}, {"content", kTurns[1]}}}},
                          {"max_tokens", 4}},
                         {}, 409);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(450));
  EXPECT_LT(waited, std::chrono::milliseconds(2400));  // gave up before the lease ended
  EXPECT_EQ(busy["error"]["type"], "invalid_request_error") << busy.dump();
  EXPECT_EQ(busy["error"]["code"], "conversation_busy") << busy.dump();
  // Nothing of the refused turn was recorded.
  EXPECT_EQ(Get(*a, "/v1/conversations/busy/history")["turns"].size(), 3u);
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  Turn(*b, "busy", kTurns[1]);
  EXPECT_EQ(Get(*b, "/v1/conversations/busy/history")["turns"].size(), 5u);
}

TEST_F(ClusterTest, ARedisOutageCostsOnlyTheSharing) {
  auto a = Replica();
  ASSERT_TRUE(a->ok());
  Turn(*a, "o", kTurns[0]);
  redis_.Stop();
  // Requests keep succeeding from the local tiers, and /health says the remote is degraded.
  const Json during = Turn(*a, "o", kTurns[1]);
  EXPECT_GT(during["usage"]["completion_tokens"].get<int64_t>(), 0);
  Turn(*a, "o", kTurns[2]);
  Json health = Get(*a, "/health");
  EXPECT_EQ(health["remote"]["status"], "degraded") << health["remote"].dump();
  EXPECT_EQ(health["status"], "degraded");
  // Redis back, empty: the next turn writes the conversation again, and another replica
  // continues it with every turn.
  ASSERT_TRUE(redis_.Start());
  Json after;
  for (int i = 0; i < 40; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    if (Get(*a, "/health")["remote"]["status"] == "ok") break;
    Get(*a, "/v1/cache/stats");
  }
  Turn(*a, "o", kTurns[3]);
  health = Get(*a, "/health");
  EXPECT_EQ(health["remote"]["status"], "ok") << health["remote"].dump();
  EXPECT_GE(health["remote"]["resyncs"].get<int64_t>(), 1);
  auto b = Replica();
  ASSERT_TRUE(b->ok());
  Turn(*b, "o", "And then?");
  EXPECT_EQ(Get(*b, "/v1/conversations/o/history")["turns"].size(), 1u + 2 * 5);
}

// Sessions and the knowledge store's facts are shared state too: what one replica saves,
// another lists, loads and searches; a replacement or removal on one is what the other sees;
// and after Redis restarts empty, the replicas publish what they hold again.
TEST_F(ClusterTest, SessionsAndFactsSavedOnOneReplicaServeOnAnother) {
  auto a = Replica();
  auto b = Replica();
  ASSERT_TRUE(a->ok() && b->ok());
  for (size_t i = 0; i < 3; ++i) Turn(*a, "s", kTurns[i]);
  Post(*a, "/v1/sessions/log/save", {{"conversation_id", "s"}});
  Post(*a, "/v1/knowledge/crew", {{"key", "mechanic"}, {"value", "Ivo repairs the rover"}});

  const Json listed = Get(*b, "/v1/sessions");
  ASSERT_EQ(listed["data"].size(), 1u) << listed.dump();
  EXPECT_EQ(listed["data"][0]["name"], "log");
  Post(*b, "/v1/sessions/log/load", {{"conversation_id", "s-copy"}});
  EXPECT_EQ(Get(*b, "/v1/conversations/s-copy/history")["turns"].size(), 1u + 2 * 3);
  // B saves A's conversation (adopting it) under another name.
  Post(*b, "/v1/sessions/copy/save", {{"conversation_id", "s"}});
  EXPECT_EQ(Get(*a, "/v1/sessions")["data"].size(), 2u);
  httplib::Client a_client("127.0.0.1", a->port());
  ASSERT_TRUE(a_client.Delete("/v1/sessions/copy"));
  const Json found = Get(*b, "/v1/knowledge/search?q=rover");
  ASSERT_EQ(found["results"].size(), 1u) << found.dump();
  EXPECT_EQ(found["results"][0]["value"], "Ivo repairs the rover");

  // B saves over A's session: A sees B's version, and the old one kept under another name.
  Turn(*b, "t", kTurns[5]);
  const Json replaced = Post(*b, "/v1/sessions/log/save", {{"conversation_id", "t"}});
  ASSERT_TRUE(replaced["replaced_as"].is_string()) << replaced.dump();
  EXPECT_EQ(Get(*a, "/v1/sessions/log")["conversation_id"], "t");
  EXPECT_EQ(Get(*a, "/v1/sessions")["data"].size(), 2u);
  // Removed on A: gone on B. A fact written on B replaces A's value everywhere.
  httplib::Client client("127.0.0.1", a->port());
  httplib::Result removed = client.Delete("/v1/sessions/log");
  ASSERT_TRUE(removed && removed->status == 200) << (removed ? removed->body : "no reply");
  EXPECT_EQ(Get(*b, "/v1/sessions")["data"].size(), 1u);
  Post(*b, "/v1/knowledge/crew", {{"key", "mechanic"}, {"value", "Tomas repairs the rover"}});
  EXPECT_EQ(Get(*a, "/v1/knowledge/search?q=rover")["results"][0]["value"],
            "Tomas repairs the rover");

  // Redis restarted empty: a replica that joins afterwards still finds both, published
  // again by A and B from their own copies.
  redis_.Stop();
  ASSERT_TRUE(redis_.Start());
  // Each replica notices on its next use of the shared state (the first fails and backs
  // off; one after the backoff reconnects and publishes).
  for (const ServerProcess* replica : {a.get(), b.get()}) {
    for (int i = 0; i < 60; ++i) {
      Get(*replica, "/v1/knowledge/search?q=rover");
      Get(*replica, "/v1/sessions");
      if (Get(*replica, "/health")["remote"]["status"] == "ok") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
  }
  auto c = Replica();
  ASSERT_TRUE(c->ok());
  EXPECT_EQ(Get(*c, "/v1/knowledge/search?q=rover")["results"][0]["value"],
            "Tomas repairs the rover");
  EXPECT_EQ(Get(*c, "/v1/sessions")["data"].size(), 1u);
  httplib::Result metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("kvault_remote_shared_writes_total{kind=\"session\"}"),
            std::string::npos);
}

TEST_F(ClusterTest, AKeysConversationsStayInvisibleThroughAnotherReplica) {
  const httplib::Headers k1 = {{"Authorization", "Bearer k1"}};
  const httplib::Headers k2 = {{"Authorization", "Bearer k2"}};
  auto a = Replica({"--api-key", "k1,k2"});
  auto b = Replica({"--api-key", "k1,k2"});
  ASSERT_TRUE(a->ok() && b->ok());
  Turn(*a, "secret", "Entry: the vault code is 4471.", k1);
  // k2 on B: the same id is another conversation; k1 on B sees its own.
  httplib::Client client("127.0.0.1", b->port());
  httplib::Result hidden = client.Get("/v1/conversations/secret/history", k2);
  ASSERT_TRUE(hidden);
  EXPECT_EQ(hidden->status, 404) << hidden->body;
  const Json theirs = Turn(*b, "secret", "What is the vault code?", k2);
  EXPECT_EQ(theirs["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << theirs.dump();
  EXPECT_EQ(Get(*b, "/v1/conversations/secret/history", k2)["turns"].size(), 3u);
  Turn(*b, "secret", "Anything else?", k1);
  EXPECT_EQ(Get(*b, "/v1/conversations/secret/history", k1)["turns"].size(), 5u);
}

}  // namespace
}  // namespace kvault::testing
