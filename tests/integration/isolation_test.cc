// End-to-end tests of tenant isolation (README "Isolation"): with --api-key k1,k2 a key
// never reuses, sees or replaces what another key stored: cached prefixes (device sequences
// and blocks), the cache tree's previews, named sessions. --shared-cache turns the KV part
// off, as documented.
#include <string>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

const httplib::Headers kK1 = {{"Authorization", "Bearer k1"}};
const httplib::Headers kK2 = {{"Authorization", "Bearer k2"}};

// A stateless prompt of several 256-token blocks with a planted word.
std::string LongPrompt(const std::string& planted) {
  std::string text = "Here are my private notes about " + planted + ".";
  for (int i = 0; i < 120; ++i) text += " Note " + std::to_string(i) + " mentions " + planted + ".";
  return text;
}

class IsolationTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--model", TestModelPath(), "--api-key", "k1,k2"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }
  static Json Post(const ServerProcess& server, const std::string& path,
                   const httplib::Headers& key, const Json& body, int expected = 200) {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(120));
    httplib::Result result = client.Post(path, key, DumpJson(body), "application/json");
    EXPECT_TRUE(result) << path;
    if (!result) return Json();
    EXPECT_EQ(result->status, expected) << path << ": " << result->body;
    return ParseJson(result->body).value_or(Json());
  }
  static Json Get(const ServerProcess& server, const std::string& path,
                  const httplib::Headers& key) {
    httplib::Client client("127.0.0.1", server.port());
    httplib::Result result = client.Get(path, key);
    EXPECT_TRUE(result && result->status == 200) << path;
    return result ? ParseJson(result->body).value_or(Json()) : Json();
  }
  // Cached prompt tokens and their source for a stateless chat request.
  static std::pair<int, std::string> Ask(const ServerProcess& server, const httplib::Headers& key,
                                         const std::string& prompt) {
    const Json reply = Post(server, "/v1/chat/completions", key,
                            {{"messages", {{{"role", "user"}, {"content", prompt}}}},
                             {"max_tokens", 2},
                             {"temperature", 0}});
    return {reply["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(),
            reply["kvault"]["cache_source"].get<std::string>()};
  }
};

TEST_F(IsolationTest, AKeyNeverReusesAnotherKeysPrefixButItsOwn) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  const std::string prompt = LongPrompt("zanzibar");
  EXPECT_EQ(Ask(*server, kK1, prompt).first, 0);
  // k2 sends k1's prompt: nothing of k1's is reused (no parked sequence, no block).
  const auto [k2_cached, k2_source] = Ask(*server, kK2, prompt);
  EXPECT_EQ(k2_cached, 0) << k2_source;
  EXPECT_EQ(k2_source, "none");
  // k1 again: its own parked sequence (or its blocks).
  const auto [k1_cached, k1_source] = Ask(*server, kK1, prompt);
  EXPECT_GT(k1_cached, 500) << k1_source;
}

TEST_F(IsolationTest, SharedCacheIsTheOperatorsChoice) {
  auto server = Start({"--shared-cache"});
  ASSERT_TRUE(server->ok());
  const std::string prompt = LongPrompt("zanzibar");
  EXPECT_EQ(Ask(*server, kK1, prompt).first, 0);
  EXPECT_GT(Ask(*server, kK2, prompt).first, 500);
}

TEST_F(IsolationTest, TheCacheTreeShowsAKeyOnlyItsOwnPrompts) {
  auto server = Start({"--conversation-threads", "1"});
  ASSERT_TRUE(server->ok());
  Ask(*server, kK1, LongPrompt("zanzibar"));
  Ask(*server, kK2, LongPrompt("kilimanjaro"));
  const std::string k1_tree = DumpJson(Get(*server, "/v1/cache/tree?limit=1000", kK1));
  const std::string k2_tree = DumpJson(Get(*server, "/v1/cache/tree?limit=1000", kK2));
  EXPECT_NE(k1_tree.find("zanzibar"), std::string::npos) << k1_tree.substr(0, 500);
  EXPECT_EQ(k1_tree.find("kilimanjaro"), std::string::npos);
  EXPECT_NE(k2_tree.find("kilimanjaro"), std::string::npos) << k2_tree.substr(0, 500);
  EXPECT_EQ(k2_tree.find("zanzibar"), std::string::npos);
  EXPECT_GT(Get(*server, "/v1/cache/tree", kK1)["nodes"].get<int>(), 0);
}

TEST_F(IsolationTest, SessionsOfTheSameNameAreTwoAndReplacingOneKeepsTheOld) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  auto chat = [&](const httplib::Headers& key, const std::string& id, const std::string& text) {
    Post(*server, "/v1/chat/completions", key,
         {{"conversation_id", id},
          {"messages", {{{"role", "user"}, {"content", text}}}},
          {"max_tokens", 2},
          {"temperature", 0}});
  };
  chat(kK1, "c1", "k1 talks about zanzibar");
  chat(kK2, "c2", "k2 talks about kilimanjaro");
  const Json saved1 =
      Post(*server, "/v1/sessions/shared-name/save", kK1, {{"conversation_id", "c1"}});
  EXPECT_TRUE(saved1["replaced_as"].is_null());
  const Json saved2 =
      Post(*server, "/v1/sessions/shared-name/save", kK2, {{"conversation_id", "c2"}});
  EXPECT_TRUE(saved2["replaced_as"].is_null()) << saved2.dump();  // k1's is not k2's to replace
  EXPECT_EQ(Get(*server, "/v1/sessions/shared-name", kK1)["conversation_id"], "c1");
  EXPECT_EQ(Get(*server, "/v1/sessions/shared-name", kK2)["conversation_id"], "c2");
  EXPECT_EQ(Get(*server, "/v1/sessions", kK1)["data"].size(), 1u);

  // k1 saves another conversation over its session: the old one stays, loadable.
  chat(kK1, "c1b", "k1 talks about lisbon");
  const Json replaced =
      Post(*server, "/v1/sessions/shared-name/save", kK1, {{"conversation_id", "c1b"}});
  ASSERT_TRUE(replaced["replaced_as"].is_string()) << replaced.dump();
  const std::string old_name = replaced["replaced_as"];
  EXPECT_EQ(Get(*server, "/v1/sessions/" + old_name, kK1)["conversation_id"], "c1");
  Post(*server, "/v1/sessions/" + old_name + "/load", kK1, {{"conversation_id", "restored"}});
  const std::string history = DumpJson(Get(*server, "/v1/conversations/restored/history", kK1));
  EXPECT_NE(history.find("zanzibar"), std::string::npos) << history;
  EXPECT_EQ(Get(*server, "/v1/sessions", kK2)["data"].size(), 1u);
}

}  // namespace
TEST_F(IsolationTest, AKeyClearsOnlyItsOwnCache) {
  auto server = Start();
  ASSERT_TRUE(server->ok());
  const std::string mine = LongPrompt("zanzibar"), theirs = LongPrompt("timbuktu");
  Ask(*server, kK1, mine);
  Ask(*server, kK2, theirs);
  const Json cleared = Post(*server, "/v1/cache/clear", kK1, Json::object());
  EXPECT_GT(cleared["cleared_blocks"].get<int64_t>(), 0) << cleared.dump();
  EXPECT_EQ(cleared["object"], "cache.clear");
  // k1's prefix is recomputed (its blocks and parked sequence are gone); k2's is still
  // reused: a key's clear never touches another key's cache.
  const auto [k1_cached, k1_source] = Ask(*server, kK1, mine);
  EXPECT_EQ(k1_cached, 0) << k1_source;
  const auto [k2_cached, k2_source] = Ask(*server, kK2, theirs);
  EXPECT_GT(k2_cached, 500) << k2_source;
}

TEST_F(IsolationTest, UnderSharedCacheAKeyMayNotClearEveryonesBlocks) {
  auto server = Start({"--shared-cache"});
  ASSERT_TRUE(server->ok());
  Ask(*server, kK2, LongPrompt("timbuktu"));
  const Json refused = Post(*server, "/v1/cache/clear", kK1, Json::object(), 409);
  EXPECT_NE(refused["error"]["message"].get<std::string>().find("--shared-cache"),
            std::string::npos)
      << refused.dump();
  EXPECT_GT(Ask(*server, kK2, LongPrompt("timbuktu")).first, 500);
}

}  // namespace kvault::testing
