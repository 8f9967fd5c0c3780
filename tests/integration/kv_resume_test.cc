// End to end, the KV state engine: a conversation that lost its device sequence resumes from
// RAM, from disk, and after a server restart, and continues (greedy) with exactly the tokens
// of a run that never left the device; corrupt block files fall back to prefill; conversations
// that share a system prompt share its KV.
//
// Tolerance, stated: restored cells may land at other cell indices than in the reference run,
// which changes f16 rounding inside attention slightly (see README "Determinism"); the test
// model's peaked distributions (--output-scale 8) keep greedy choices identical, and the
// test asserts identical text.
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/integration/server_process.h"
#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

const char* kSystem =
    "You are the archivist of a long-running research station. You remember every log entry "
    "the crew dictates, answer questions about them precisely, and never invent entries. Each "
    "entry has a date, an author, a weather note and a short description of the work done. "
    "When asked for a summary, list the entries in order with their authors.";

const std::vector<std::string> kTurns = {
    "Log entry one: Mara calibrated the wind sensors on the north mast in light rain.",
    "Log entry two: Ivo repaired the generator and measured the fuel left in tank three.",
    "Log entry three: the supply ship arrived two days late with fresh batteries.",
};

struct Reply {
  int status = 0;
  std::string content;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
};

class KvResumeTest : public ::testing::Test {
 protected:
  KvResumeTest() {
    char pattern[] = "/tmp/kvault_resume_XXXXXX";
    dir_ = ::mkdtemp(pattern);
  }
  ~KvResumeTest() override { std::filesystem::remove_all(dir_); }

  // A server whose state lives in this test's folder (so a second one finds it again).
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> args) {
    args.insert(args.begin(), {"--model", TestModelPath(), "--block-size", "32", "--cache-dir",
                               dir_ + "/blocks", "--data-dir", dir_ + "/data", "--window", "2048"});
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }

  static Reply Chat(const ServerProcess& server, const std::string& conversation,
                    const std::string& user, bool with_system) {
    Json messages = Json::array();
    if (with_system) messages.push_back({{"role", "system"}, {"content", kSystem}});
    messages.push_back({{"role", "user"}, {"content", user}});
    const Json body = {{"conversation_id", conversation},
                       {"messages", messages},
                       {"max_tokens", 24},
                       {"temperature", 0}};
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(120));
    httplib::Result result =
        client.Post("/v1/chat/completions", DumpJson(body), "application/json");
    Reply reply;
    if (!result) return reply;
    reply.status = result->status;
    Result<Json> json = ParseJson(result->body);
    if (reply.status != 200 || !json.ok()) {
      ADD_FAILURE() << result->body;
      return reply;
    }
    reply.content = (*json)["choices"][0]["message"]["content"].get<std::string>();
    reply.prompt_tokens = (*json)["usage"]["prompt_tokens"].get<int64_t>();
    reply.cached_tokens = (*json)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
    return reply;
  }

  static Json CacheStats(const ServerProcess& server) {
    httplib::Client client("127.0.0.1", server.port());
    httplib::Result result = client.Get("/v1/cache/stats");
    EXPECT_TRUE(result && result->status == 200);
    return result ? ParseJson(result->body).value_or(Json::object()) : Json::object();
  }

  // Other conversations take the device's sequences (threads 1 = 2 sequences), so the next
  // turn of `conversation` must come from elsewhere than its own cells.
  static void Displace(const ServerProcess& server, int round) {
    for (int i = 0; i < 2; ++i) {
      const Reply r = Chat(
          server, "intruder-" + std::to_string(round) + "-" + std::to_string(i),
          "Tell me something unrelated about volcanoes, number " + std::to_string(i) + ".", false);
      EXPECT_EQ(r.status, 200);
    }
  }

  // Conversation "c" plays every turn, displaced from the device before each one after the
  // first; its replies must be the reference's and its prompts mostly cached.
  static void ExpectDisplacedTurnsMatch(const ServerProcess& server,
                                        const std::vector<std::string>& reference) {
    for (size_t i = 0; i < kTurns.size(); ++i) {
      if (i > 0) Displace(server, static_cast<int>(i));
      const Reply reply = Chat(server, "c", kTurns[i], i == 0);
      EXPECT_EQ(reply.content, reference[i]) << "turn " << i;
      if (i > 0) EXPECT_GT(reply.cached_tokens, 100) << "turn " << i;
    }
  }

  // The replies of a conversation that never leaves the device.
  std::vector<std::string> Reference() {
    auto server = Start({"--conversation-threads", "4", "--restore", "never"});
    std::vector<std::string> replies;
    for (size_t i = 0; i < kTurns.size(); ++i) {
      replies.push_back(Chat(*server, "reference", kTurns[i], i == 0).content);
    }
    server->Terminate();
    std::filesystem::remove_all(dir_ + "/blocks");
    std::filesystem::remove_all(dir_ + "/data");
    return replies;
  }

  std::string dir_;
};

TEST_F(KvResumeTest, ResumedFromRamContinuesExactlyAsANeverEvictedRun) {
  const std::vector<std::string> reference = Reference();
  auto server = Start({"--conversation-threads", "1", "--cache-disk-gb", "0"});
  ExpectDisplacedTurnsMatch(*server, reference);
  const Json stats = CacheStats(*server);
  EXPECT_GE(stats["prefix_sources"]["ram"].get<int64_t>(), 2) << stats.dump();
  EXPECT_EQ(stats["safe_mode_fallbacks"].get<int64_t>(), 0);
}

TEST_F(KvResumeTest, ResumedFromDiskContinuesExactlyAsANeverEvictedRun) {
  const std::vector<std::string> reference = Reference();
  // No RAM budget: every block is demoted to disk at once and read back from there.
  auto server = Start({"--conversation-threads", "1", "--cache-ram-mb", "0"});
  ExpectDisplacedTurnsMatch(*server, reference);
  const Json stats = CacheStats(*server);
  EXPECT_GE(stats["prefix_sources"]["disk"].get<int64_t>(), 2) << stats.dump();
  EXPECT_GT(stats["tiers"]["disk"]["hits"].get<int64_t>(), 0);
}

TEST_F(KvResumeTest, ARestartedServerResumesEveryConversationWithoutPrefill) {
  const std::vector<std::string> reference = Reference();
  for (size_t i = 0; i < kTurns.size(); ++i) {
    auto server = Start({"--conversation-threads", "1"});
    const Reply reply = Chat(*server, "c", kTurns[i], i == 0);
    EXPECT_EQ(reply.content, reference[i]) << "turn " << i;
    if (i > 0) {
      // All but the new message and the re-rendered end of the last reply came from disk.
      EXPECT_GT(reply.cached_tokens, reply.prompt_tokens - 48) << "turn " << i;
      const Json stats = CacheStats(*server);
      EXPECT_EQ(stats["prefix_sources"]["disk"].get<int64_t>(), 1) << stats.dump();
      EXPECT_GT(stats["recovered_blocks"].get<int64_t>(), 0);
    }
    EXPECT_EQ(server->Terminate(), 0);
  }
}

TEST_F(KvResumeTest, CorruptAndTruncatedBlockFilesFallBackToPrefill) {
  const std::vector<std::string> reference = Reference();
  {
    auto server = Start({});
    EXPECT_EQ(Chat(*server, "c", kTurns[0], true).content, reference[0]);
    EXPECT_EQ(server->Terminate(), 0);
  }
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_ + "/blocks")) {
    if (entry.is_regular_file() && entry.path().extension() == ".kvb") {
      files.push_back(entry.path().string());
    }
  }
  ASSERT_GE(files.size(), 3u);
  std::sort(files.begin(), files.end());
  for (size_t i = 0; i < files.size(); ++i) {
    if (i % 2 == 0) {  // a flipped byte in the payload: the checksum catches it on read
      std::fstream f(files[i], std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(-100, std::ios::end);
      f.put('\x7f');
    } else {  // a truncated file: found at start-up
      std::filesystem::resize_file(files[i], std::filesystem::file_size(files[i]) / 2);
    }
  }
  auto server = Start({});
  const Reply reply = Chat(*server, "c", kTurns[1], false);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.content, reference[1]);
  const Json stats = CacheStats(*server);
  EXPECT_GE(stats["safe_mode_fallbacks"].get<int64_t>() + stats["corrupt_blocks"].get<int64_t>(), 1)
      << stats.dump();
  EXPECT_GE(stats["corrupt_blocks"].get<int64_t>(), 1) << stats.dump();
}

TEST_F(KvResumeTest, ConversationsSharingASystemPromptShareItsKv) {
  auto server = Start({"--conversation-threads", "2"});
  const Reply first = Chat(*server, "a", kTurns[0], true);
  const Reply second = Chat(*server, "b", kTurns[1], true);
  // Everything up to the user message is the same system prompt.
  EXPECT_GT(second.cached_tokens, 60);
  const Json stats = CacheStats(*server);
  EXPECT_EQ(stats["prefix_sources"]["shared"].get<int64_t>() +
                stats["prefix_sources"]["ram"].get<int64_t>(),
            1)
      << stats.dump();
  httplib::Client client("127.0.0.1", server->port());
  httplib::Result tree = client.Get("/v1/cache/tree?limit=5");
  ASSERT_TRUE(tree && tree->status == 200);
  const Json json = *ParseJson(tree->body);
  ASSERT_FALSE(json["top"].empty());
  EXPECT_NE(json["top"][0]["preview"].get<std::string>().find("archivist"), std::string::npos)
      << tree->body;
  EXPECT_EQ(client.Get("/v1/cache/tree?limit=zero")->status, 400);
}

TEST_F(KvResumeTest, ASavedSessionLoadsIntoAnotherConversationAfterARestart) {
  Reply saved_reply;
  {
    auto server = Start({});
    saved_reply = Chat(*server, "origin", kTurns[0], true);
    httplib::Client client("127.0.0.1", server->port());
    httplib::Result saved = client.Post("/v1/sessions/station-log/save",
                                        R"({"conversation_id":"origin"})", "application/json");
    ASSERT_TRUE(saved && saved->status == 200) << (saved ? saved->body : "no reply");
    const Json info = *ParseJson(saved->body);
    EXPECT_GT(info["kv_tokens"].get<int64_t>(), 100) << saved->body;
    EXPECT_GT(info["bytes"].get<int64_t>(), 0);
    EXPECT_EQ(client
                  .Post("/v1/sessions/station-log/save", R"({"conversation_id":"nobody"})",
                        "application/json")
                  ->status,
              404);
    EXPECT_EQ(
        client
            .Post("/v1/sessions/..bad/save", R"({"conversation_id":"origin"})", "application/json")
            ->status,
        400);
    EXPECT_EQ(server->Terminate(), 0);
  }
  auto server = Start({"--cache-ram-mb", "0"});
  httplib::Client client("127.0.0.1", server->port());
  httplib::Result list = client.Get("/v1/sessions");
  ASSERT_TRUE(list && list->status == 200);
  EXPECT_EQ((*ParseJson(list->body))["data"].size(), 1u) << list->body;
  ASSERT_EQ(client
                .Post("/v1/sessions/station-log/load", R"({"conversation_id":"copy"})",
                      "application/json")
                ->status,
            200);
  const Reply next = Chat(*server, "copy", kTurns[1], false);
  EXPECT_GT(next.cached_tokens, next.prompt_tokens - 48);
  // The copy continues exactly like the original would have.
  const Reply original = Chat(*server, "origin", kTurns[1], false);
  EXPECT_EQ(next.content, original.content);

  EXPECT_EQ(client.Get("/v1/sessions/missing")->status, 404);
  ASSERT_EQ(client.Post("/v1/sessions/station-log/clear", "", "application/json")->status, 200);
  EXPECT_EQ((*ParseJson(client.Get("/v1/sessions/station-log")->body))["tokens"], 0);
  ASSERT_EQ(client.Delete("/v1/sessions/station-log")->status, 200);
  EXPECT_EQ(client.Get("/v1/sessions/station-log")->status, 404);
}

TEST_F(KvResumeTest, SessionsAreListedAndRemovedOffline) {
  {
    auto server = Start({});
    Chat(*server, "origin", kTurns[0], true);
    httplib::Client client("127.0.0.1", server->port());
    ASSERT_EQ(client
                  .Post("/v1/sessions/offline-one/save", R"({"conversation_id":"origin"})",
                        "application/json")
                  ->status,
              200);
    EXPECT_EQ(server->Terminate(), 0);
  }
  const std::string data = "--data-dir=" + dir_ + "/data";
  ProcessResult listed = RunProcess({KvaultBinary(), "session", data, "list"});
  EXPECT_EQ(listed.exit_code, 0);
  EXPECT_NE(listed.out.find("offline-one"), std::string::npos) << listed.out;
  ProcessResult info = RunProcess({KvaultBinary(), "session", data, "info", "offline-one"});
  EXPECT_EQ(info.exit_code, 0);
  EXPECT_NE(info.out.find("kv_tokens:"), std::string::npos) << info.out;
  EXPECT_EQ(RunProcess({KvaultBinary(), "session", data, "rm", "offline-one"}).exit_code, 0);
  ProcessResult gone = RunProcess({KvaultBinary(), "session", data, "info", "offline-one"});
  EXPECT_EQ(gone.exit_code, 3);
  EXPECT_EQ(std::count(gone.err.begin(), gone.err.end(), '\n'), 1) << gone.err;
}

TEST_F(KvResumeTest, PreloadedPrefixesAreCachedBeforeTheFirstRequest) {
  const std::string preload = dir_ + "/preload.json";
  Json messages = Json::array();
  messages.push_back({{"role", "system"}, {"content", kSystem}});
  messages.push_back({{"role", "user"}, {"content", "hi"}});
  Json prompts = Json::array();
  prompts.push_back({{"messages", messages}});
  std::ofstream(preload) << prompts.dump();
  auto server = Start({"--preload", preload});
  const Reply first = Chat(*server, "fresh", kTurns[0], true);
  EXPECT_GT(first.cached_tokens, 60);  // the whole system prompt
  httplib::Client client("127.0.0.1", server->port());
  const Json tree = *ParseJson(client.Get("/v1/cache/tree?limit=1")->body);
  EXPECT_GE(tree["top"][0]["pins"].get<int64_t>(), 1) << tree.dump();
}

TEST_F(KvResumeTest, APinnedConversationKeepsItsSequence) {
  // threads 1 = 2 sequences, one spare: one conversation can be pinned.
  auto server = Start({"--conversation-threads", "1"});
  httplib::Client client("127.0.0.1", server->port());
  Json body = {{"conversation_id", "pinned"},
               {"pin", true},
               {"messages", {{{"role", "user"}, {"content", kTurns[0]}}}},
               {"max_tokens", 8},
               {"temperature", 0}};
  ASSERT_EQ(client.Post("/v1/chat/completions", body.dump(), "application/json")->status, 200);
  Displace(*server, 1);
  // Two other conversations came and went through the one unreserved sequence.
  const Json list = *ParseJson(client.Post("/v1/conversations/list", "", "application/json")->body);
  int64_t pinned_tokens = 0;
  for (const Json& c : list["conversations"]) {
    if (c["conversation_id"] == "pinned") pinned_tokens = c["device_tokens"].get<int64_t>();
  }
  EXPECT_GT(pinned_tokens, 0) << list.dump();
  body["conversation_id"] = "second-pin";
  EXPECT_EQ(client.Post("/v1/chat/completions", body.dump(), "application/json")->status, 409);
}

}  // namespace
}  // namespace kvault::testing
