// End to end, recall of what a question needs when the words differ or the answer is spread
// over turns (issue 16), on the tiny model with no embedding model: a fact whose name is in one
// turn and whose thing is in another, ~10,000 tokens apart, gets both turns into the recall
// block; a question asked in other words than its fact finds it (WordNet's "car" for
// "automobile"). The prompt is read back with "return_prompt".
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

  static Json Post(const ServerProcess& server, const std::string& path, const Json& body) {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(300));
    httplib::Result result = client.Post(path, DumpJson(body), "application/json");
    EXPECT_TRUE(result) << path;
    if (!result) return Json();
    EXPECT_EQ(result->status, 200) << result->body.substr(0, 2000);
    return ParseJson(result->body).value_or(Json());
  }

  // The prompt the question gets, as text.
  static std::string PromptFor(const ServerProcess& server, const std::string& question) {
    const Json reply = Post(server, "/v1/chat/completions",
                            {{"conversation_id", "c"},
                             {"messages", {{{"role", "user"}, {"content", question}}}},
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

}  // namespace
}  // namespace kvault::testing
