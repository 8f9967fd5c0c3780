// End to end, recall of what a question needs when the words differ or the answer is spread
// over turns (issue 16), on the tiny model with no embedding model: a fact whose name is in one
// turn and whose thing is in another, ~10,000 tokens apart, gets both turns into the recall
// block; a question asked in other words than its fact finds it (WordNet's "car" for
// "automobile"); messages' timestamps are stored, returned by history and search, survive a
// kill -9, date the recall annotation and let a question about a month find what was said
// then. The prompt is read back with "return_prompt".
#include <filesystem>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/json.h"
#include "kvault/base/time_text.h"
#include "kvault/testing/planted_history.h"

namespace kvault::testing {
namespace {

class RecallEvidenceTest : public ::testing::Test {
 protected:
  RecallEvidenceTest() {
    char pattern[] = "/tmp/kvault_recall_XXXXXX";
    dir_ = ::mkdtemp(pattern);
  }
  ~RecallEvidenceTest() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<ServerProcess> Start() {
    auto server = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--model", TestModelPath(), "--window", "4096", "--cache-dir",
                                 dir_ + "/blocks", "--data-dir", dir_ + "/data"});
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }

  static Json Post(const ServerProcess& server, const std::string& path, const Json& body,
                   int want_status = 200) {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(300));
    httplib::Result result = client.Post(path, DumpJson(body), "application/json");
    EXPECT_TRUE(result) << path;
    if (!result) return Json();
    EXPECT_EQ(result->status, want_status) << result->body.substr(0, 2000);
    return ParseJson(result->body).value_or(Json());
  }
  static Json Get(const ServerProcess& server, const std::string& path) {
    httplib::Client client("127.0.0.1", server.port());
    httplib::Result result = client.Get(path);
    EXPECT_TRUE(result && result->status == 200) << path;
    return result ? ParseJson(result->body).value_or(Json()) : Json();
  }

  // The prompt the question gets, as text.
  static std::string PromptFor(const ServerProcess& server, const std::string& question,
                               const Json& timestamp = nullptr) {
    const Json reply =
        Post(server, "/v1/chat/completions",
             {{"conversation_id", "c"},
              {"messages", {{{"role", "user"}, {"content", question}, {"timestamp", timestamp}}}},
              {"max_tokens", 2},
              {"temperature", 0},
              {"return_prompt", true}});
    EXPECT_GE(reply["kvault"]["recalled_chunks"].get<int64_t>(), 1) << reply.dump();
    return reply["kvault"]["prompt"].get<std::string>();
  }

  std::string dir_;
};

// Filler turns are ~45 tokens: message 41 and message 261 are ~10,000 tokens apart, and
// ~6,000 tokens of filler follow, beyond the 4096-token window.
TEST_F(RecallEvidenceTest, BothTurnsOfATwoTurnFactAreRecalled) {
  Json history = PlantedHistory(400, 1000);  // filler only
  history[41]["content"] = "By the way, my sister is called Ottoline.";
  history[261]["content"] = "Ottoline adopted a ferret from the shelter and named it Nimbus.";
  // Turns that say "sister" more often than the one that names her: "sister" alone would
  // fill the recall budget with them (one search step does).
  for (int m : {81, 101, 121, 141, 161, 201, 301, 341}) {
    history[m]["content"] = "My sister and my sister's friends talked about the city.";
  }
  auto server = Start();
  Post(*server, "/v1/conversations/append", {{"conversation_id", "c"}, {"messages", history}});
  const std::string prompt = PromptFor(*server, "What pet did my sister adopt?");
  EXPECT_NE(prompt.find("Ottoline adopted a ferret"), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("my sister is called Ottoline"), std::string::npos) << prompt;
}

TEST_F(RecallEvidenceTest, AParaphrasedQuestionFindsItsFactWithoutAnEmbeddingModel) {
  if (!std::filesystem::exists("/usr/share/wordnet/index.noun")) {
    GTEST_SKIP() << "no WordNet (scripts/bootstrap.sh installs wordnet-base)";
  }
  Json history = PlantedHistory(400, 1000);
  history[61]["content"] = "The automobile I drive these days is an old maroon Saab.";
  auto server = Start();
  Post(*server, "/v1/conversations/append", {{"conversation_id", "c"}, {"messages", history}});
  const std::string prompt = PromptFor(*server, "Which car do I own?");
  EXPECT_NE(prompt.find("old maroon Saab"), std::string::npos) << prompt;
}

// 20 April 2023, 00:00 UTC; the planted history's messages come an hour apart from it.
constexpr int64_t kStart = 1681948800;

TEST_F(RecallEvidenceTest, TimestampsAreKeptReturnedAndDateTheRecall) {
  Json history = PlantedHistory(400, 1000);
  for (size_t m = 0; m < history.size(); ++m) {  // ISO 8601 and Unix seconds, alternately
    const int64_t time = kStart + static_cast<int64_t>(m) * 3600;
    history[m]["timestamp"] = m % 2 ? Json(time) : Json(Iso8601Text(time));
  }
  // Message 281 is said on 1 May 2023 at 17:00; the April ones say "bake" more often.
  history[281]["content"] = "I baked little apricot tarts for the neighbours.";
  for (int m : {101, 141, 181}) {
    history[m]["content"] = "We baked and baked, baking bread all day: the bakery smell!";
  }
  {
    auto server = Start();
    // A timestamp that is no time: 400, naming the field, and nothing is stored.
    Json bad = history;
    bad[5]["timestamp"] = "last Tuesday";
    const Json refused = Post(*server, "/v1/conversations/append",
                              {{"conversation_id", "c"}, {"messages", bad}}, 400);
    EXPECT_NE(refused.dump().find("messages[5].timestamp"), std::string::npos) << refused.dump();
    bad[5]["timestamp"] = int64_t{1681948800000};  // milliseconds
    Post(*server, "/v1/conversations/append", {{"conversation_id", "c"}, {"messages", bad}}, 400);
    Post(*server, "/v1/conversations/append", {{"conversation_id", "c"}, {"messages", history}});
    const Json turns = Get(*server, "/v1/conversations/c/history")["turns"];
    ASSERT_EQ(turns.size(), history.size());
    EXPECT_EQ(turns[281]["timestamp"], "2023-05-01T17:00:00Z");
    EXPECT_EQ(turns[1]["timestamp"], Iso8601Text(kStart + 3600));
    // Search returns the time of each result's first turn.
    const Json found = Post(*server, "/v1/conversations/search",
                            {{"conversation_id", "c"}, {"query", "apricot tarts"}, {"k", 1}});
    ASSERT_EQ(found["results"].size(), 1u);
    const Json& hit = found["results"][0];
    EXPECT_EQ(hit["timestamp"], turns[hit["first_turn"].get<size_t>()]["timestamp"]);
    EXPECT_EQ(hit["timestamp"].get<std::string>().substr(0, 10), "2023-05-01");
    // The question, asked in August: "May" is May 2023, and the annotation gives the day.
    const std::string prompt =
        PromptFor(*server, "What did I bake in May?", "2023-08-16T12:00:00Z");
    EXPECT_NE(prompt.find("apricot tarts"), std::string::npos) << prompt;
    EXPECT_NE(prompt.find(", 1 May 2023, about "), std::string::npos) << prompt;
    // A search asked at a given time resolves its relative dates from there.
    const Json asked = Post(*server, "/v1/conversations/search",
                            {{"conversation_id", "c"},
                             {"query", "What did I bake two months ago?"},
                             {"timestamp", "2023-07-01T09:00:00Z"},
                             {"k", 1}});
    ASSERT_EQ(asked["results"].size(), 1u);
    EXPECT_NE(asked["results"][0]["text"].get<std::string>().find("apricot"), std::string::npos)
        << asked.dump();
    Post(*server, "/v1/conversations/search",
         {{"conversation_id", "c"}, {"query", "tarts"}, {"timestamp", "soon"}}, 400);
  }  // kill -9
  auto server = Start();
  const Json turns = Get(*server, "/v1/conversations/c/history")["turns"];
  ASSERT_EQ(turns.size(), history.size() + 2);  // the question and its answer
  EXPECT_EQ(turns[281]["timestamp"], "2023-05-01T17:00:00Z");
  EXPECT_EQ(turns[history.size()]["timestamp"], "2023-08-16T12:00:00Z");
  // The reply is dated with its question (a replayed conversation keeps its timeline).
  EXPECT_EQ(turns[history.size() + 1]["timestamp"], "2023-08-16T12:00:00Z");
  // A message without a timestamp: the time it was received.
  Post(*server, "/v1/conversations/append",
       {{"conversation_id", "c"},
        {"messages", {{{"role", "user"}, {"content", "and one more thing"}}}},
        {"history", "append"}});
  const Json after = Get(*server, "/v1/conversations/c/history")["turns"];
  ASSERT_EQ(after.size(), history.size() + 3);
  const std::string received = after[history.size() + 2]["timestamp"].get<std::string>();
  const std::optional<int64_t> stored = ParseIso8601(received);
  ASSERT_TRUE(stored.has_value()) << received;
  EXPECT_LE(std::abs(*stored - UnixNow()), 600);
  const Json found = Post(*server, "/v1/conversations/search",
                          {{"conversation_id", "c"}, {"query", "apricot tarts"}, {"k", 1}});
  ASSERT_EQ(found["results"].size(), 1u);
  EXPECT_EQ(found["results"][0]["timestamp"].get<std::string>().substr(0, 10), "2023-05-01");
}

}  // namespace
}  // namespace kvault::testing
