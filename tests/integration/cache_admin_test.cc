// End-to-end tests of the cache's administration (zKV's prompt-cache controls): POST
// /v1/cache/clear for the whole cache, one conversation or one session, and --cache-ttl.
// Clearing drops KV, never history: every cleared conversation goes on where it was.
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

const std::string kSystem =
    "You are the archivist of a long-running research station. You remember every log entry "
    "the crew dictates, answer questions about them precisely, and never invent entries. Each "
    "entry has a date, an author, a weather note and a short description of the work done.";

class CacheAdminTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--model", TestModelPath(),          "--block-size",
                                     "32",      "--conversation-threads", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }
  static httplib::Result Send(const ServerProcess& server, const std::string& path,
                              const std::string& body) {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(120));
    return client.Post(path, body, "application/json");
  }
  static Json Post(const ServerProcess& server, const std::string& path, const Json& body,
                   int expected = 200) {
    httplib::Result result = Send(server, path, DumpJson(body));
    EXPECT_TRUE(result) << path;
    if (!result) return Json();
    EXPECT_EQ(result->status, expected) << path << ": " << result->body;
    return ParseJson(result->body).value_or(Json());
  }
  static Json Get(const ServerProcess& server, const std::string& path) {
    httplib::Client client("127.0.0.1", server.port());
    httplib::Result result = client.Get(path);
    EXPECT_TRUE(result && result->status == 200) << path;
    return result ? ParseJson(result->body).value_or(Json()) : Json();
  }
  // One turn of conversation `id` (the system prompt plus the new message); the reply.
  static Json Turn(const ServerProcess& server, const std::string& id, const std::string& user) {
    return Post(
        server, "/v1/chat/completions",
        {{"conversation_id", id},
         {"messages",
          {{{"role", "system"}, {"content", kSystem}}, {{"role", "user"}, {"content", user}}}},
         {"max_tokens", 4},
         {"temperature", 0}});
  }
  static int64_t TreeNodes(const ServerProcess& server) {
    return Get(server, "/v1/cache/tree")["nodes"].get<int64_t>();
  }
};

TEST_F(CacheAdminTest, ClearingAConversationDropsItsOwnKvAndKeepsItsHistory) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  Turn(*server, "a", "Log entry: Mara calibrated the anemometer on Monday under clear skies.");
  Turn(*server, "b", "Log entry: Ivo repaired the radio mast on Tuesday in heavy fog.");
  const int64_t before = TreeNodes(*server);
  ASSERT_GT(before, 2);

  const Json cleared = Post(*server, "/v1/cache/clear", {{"conversation_id", "a"}});
  EXPECT_EQ(cleared["object"], "cache.clear");
  EXPECT_EQ(cleared["conversation_id"], "a");
  EXPECT_EQ(cleared["conversations"], 1);
  EXPECT_EQ(cleared["device_sequences"], 1);
  const int64_t dropped = cleared["cleared_blocks"].get<int64_t>();
  EXPECT_GT(dropped, 0);
  EXPECT_GT(cleared["cleared_bytes"].get<int64_t>(), 0);
  // Only a's own blocks: the system prompt's, which b uses too, stay.
  EXPECT_EQ(TreeNodes(*server), before - dropped);
  EXPECT_GT(TreeNodes(*server), 0);
  const Json stats = Get(*server, "/v1/cache/stats");
  EXPECT_EQ(stats["cleared_blocks"].get<int64_t>(), dropped);

  // a goes on where it was: its history is whole and its next turn is answered.
  const Json next = Turn(*server, "a", "What did Mara do on Monday?");
  EXPECT_GT(next["usage"]["completion_tokens"].get<int64_t>(), 0) << next.dump();
  // The system message, two questions and two replies.
  const Json history = Get(*server, "/v1/conversations/a/history");
  EXPECT_EQ(history["turns"].size(), 5u) << history.dump();

  // Everything: b's blocks and parked sequence too; nothing is pinned, so the tree empties.
  const Json all = Post(*server, "/v1/cache/clear", Json::object());
  EXPECT_GT(all["cleared_blocks"].get<int64_t>(), 0);
  EXPECT_EQ(all["conversations"], 2);
  EXPECT_EQ(all["pinned_blocks_kept"], 0);
  EXPECT_EQ(TreeNodes(*server), 0);
  const Json after = Turn(*server, "b", "What did Ivo repair?");
  EXPECT_EQ(after["usage"]["prompt_tokens_details"]["cached_tokens"], 0) << after.dump();
}

TEST_F(CacheAdminTest, ASessionsPinnedKvIsClearedOnlyByName) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  Turn(*server, "s", "Log entry: the generator was refuelled on Wednesday.");
  Post(*server, "/v1/sessions/station/save", {{"conversation_id", "s"}});
  ASSERT_GT(Get(*server, "/v1/sessions/station")["blocks"].get<int64_t>(), 0);

  // A whole clear leaves what the session pins.
  const Json all = Post(*server, "/v1/cache/clear", Json::object());
  EXPECT_GT(all["pinned_blocks_kept"].get<int64_t>(), 0) << all.dump();
  EXPECT_GT(TreeNodes(*server), 0);

  const Json cleared = Post(*server, "/v1/cache/clear", {{"session", "station"}});
  EXPECT_EQ(cleared["session"], "station");
  EXPECT_GT(cleared["cleared_blocks"].get<int64_t>(), 0);
  EXPECT_EQ(TreeNodes(*server), 0);
  // The session keeps its turns and still loads (its KV is then recomputed).
  const Json session = Get(*server, "/v1/sessions/station");
  EXPECT_EQ(session["blocks"], 0);
  EXPECT_EQ(session["turns"], 3);  // system, user, assistant
  Post(*server, "/v1/sessions/station/load", {{"conversation_id", "s2"}});
  EXPECT_EQ(Get(*server, "/v1/conversations/s2/history")["turns"].size(), 3u);
}

TEST_F(CacheAdminTest, BadClearRequestsChangeNothing) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  Turn(*server, "a", "Log entry: the hatch was sealed.");
  const int64_t before = TreeNodes(*server);
  const std::pair<std::string, int> cases[] = {{R"({"conversation_id": "a", "session": "x"})", 400},
                                               {R"({"conversation_id": "nobody"})", 404},
                                               {R"({"session": "nothing"})", 404},
                                               {R"({"conversation": "a"})", 400},
                                               {R"({"conversation_id": 7})", 400},
                                               {R"([1, 2])", 400},
                                               {R"({"conversation_id": )", 400}};
  for (const auto& [body, status] : cases) {
    httplib::Result result = Send(*server, "/v1/cache/clear", body);
    ASSERT_TRUE(result) << body;
    EXPECT_EQ(result->status, status) << body << " -> " << result->body;
    const Json error = ParseJson(result->body).value_or(Json());
    EXPECT_TRUE(error.contains("error") && error["error"].contains("message")) << result->body;
  }
  EXPECT_EQ(TreeNodes(*server), before);
}

TEST_F(CacheAdminTest, TheCacheTtlDropsBlocksNobodyUses) {
  auto server = Start({"--cache-ttl", "1"});
  ASSERT_TRUE(server->ok());
  Turn(*server, "a", "Log entry: the antenna was realigned.");
  ASSERT_GT(TreeNodes(*server), 0);
  EXPECT_EQ(Get(*server, "/v1/cache/stats")["ttl_seconds"], 1.0);
  // The sweep runs every quarter of the TTL: all gone well within 10 s.
  Json stats;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    stats = Get(*server, "/v1/cache/stats");
    if (stats["tree_nodes"] == 0) break;
  }
  EXPECT_EQ(stats["tree_nodes"], 0) << stats.dump();
  EXPECT_GT(stats["expired_blocks"].get<int64_t>(), 0);
  httplib::Client client("127.0.0.1", server->port());
  httplib::Result metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("kvault_cache_expired_blocks_total " +
                               std::to_string(stats["expired_blocks"].get<int64_t>())),
            std::string::npos);
  // The conversation's history is untouched.
  EXPECT_EQ(Get(*server, "/v1/conversations/a/history")["turns"].size(), 3u);
}

// zKV's preload form: named prefixes, listed in the stats with their use.
TEST_F(CacheAdminTest, NamedPreloadedPrefixesAreListedWithTheirHits) {
  const std::string preload = ::testing::TempDir() + "/named_preload.json";
  {
    std::ofstream out(preload);
    out << DumpJson(Json::array(
        {{{"name", "default_system"}, {"content", kSystem}, {"preload", true}},
         {{"name", "counted_only"}, {"content", "You answer in haiku."}, {"preload", false}}}));
  }
  auto server = Start({"--preload", preload});
  ASSERT_TRUE(server->ok());
  Turn(*server, "a", "Log entry: the greenhouse lamps were replaced.");
  Turn(*server, "b", "Log entry: the rover's left wheel was swapped.");
  Post(*server, "/v1/chat/completions",
       {{"messages", {{{"role", "user"}, {"content", "No system prompt at all."}}}},
        {"max_tokens", 2}});
  const Json named = Get(*server, "/v1/cache/stats")["named_prefixes"];
  ASSERT_EQ(named.size(), 2u) << named.dump();
  EXPECT_EQ(named[0]["name"], "default_system");
  EXPECT_EQ(named[0]["preloaded"], true);
  EXPECT_GT(named[0]["tokens"].get<int64_t>(), 40);
  EXPECT_EQ(named[0]["pinned_tokens"], named[0]["tokens"]);
  EXPECT_EQ(named[0]["requests"], 2);  // the two conversations, not the stateless request
  EXPECT_EQ(named[0]["hits"], 2);      // both reused the preloaded KV
  EXPECT_EQ(named[0]["hit_rate"], 1.0);
  EXPECT_EQ(named[1]["name"], "counted_only");
  EXPECT_EQ(named[1]["preloaded"], false);
  EXPECT_EQ(named[1]["pinned_tokens"], 0);
  EXPECT_EQ(named[1]["requests"], 0);
}

TEST_F(CacheAdminTest, ABadNamedPrefixStopsTheServerWithOneLine) {
  const std::string preload = ::testing::TempDir() + "/bad_named_preload.json";
  const std::pair<std::string, std::string> cases[] = {
      {R"([{"name": "a", "content": "x"}, {"name": "a", "content": "y"}])", "given twice"},
      {R"([{"name": "", "content": "x"}])", "non-empty name"},
      {R"([{"name": "a", "content": "x", "preload": "yes"}])", "preload (boolean)"}};
  for (const auto& [text, expected] : cases) {
    std::ofstream(preload) << text;
    ServerProcess server({"--model", TestModelPath(), "--preload", preload});
    EXPECT_FALSE(server.ok()) << text;
    EXPECT_NE(server.log().find(expected), std::string::npos) << text << "\n" << server.log();
  }
}

}  // namespace
}  // namespace kvault::testing
