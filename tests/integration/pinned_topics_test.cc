// The TSCM seed's dedicated slots (issue 15, items 12 and 13): `--pinned-sequences N` gives
// pinned conversations device sequences of their own beyond the conversation threads, so
// interleaved topics keep their KV across turns while unpinned traffic runs on the threads'
// sequences; the N+1th pin is refused with 409 pins_exhausted. And `kvault bench topics`, the
// seed's experiment, runs end to end on tiny settings.
#include <chrono>
#include <string>
#include <vector>

#include "tests/integration/server_process.h"
#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

const char* kSubjects[] = {"gardening", "astronomy", "cooking", "sailing",
                           "chess",     "pottery",   "cycling", "birding"};

// A topic's own long-ish context: its system prompt.
std::string TopicContext(int topic) {
  const std::string subject = kSubjects[topic % std::size(kSubjects)];
  std::string text = "You are the assistant for the " + subject + " notebook number " +
                     std::to_string(topic) + ". Keep every note about " + subject + ".";
  for (int i = 0; i < 6; ++i) {
    text += " Notes on " + subject + " are kept in order, with their dates and their authors,";
  }
  return text + " and answered briefly.";
}

struct Turn {
  int status = 0;
  Json body;
};

class PinnedTopicsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--model", TestModelPath(), "--conversation-threads", "2",
                                 "--pinned-sequences", "6", "--window", "512"});
    ASSERT_TRUE(server_->ok()) << server_->log();
  }

  // One turn of `id`: its whole history so far plus a new question, as an OpenAI client
  // sends it; the reply is appended to `history` when it succeeds.
  Turn Ask(const std::string& id, Json& history, int topic, int cycle, bool pin) {
    if (history.empty()) history.push_back({{"role", "system"}, {"content", TopicContext(topic)}});
    Json messages = history;
    messages.push_back({{"role", "user"},
                        {"content", "Question " + std::to_string(cycle) + " about notebook " +
                                        std::to_string(topic)}});
    const Json request = {{"conversation_id", id},
                          {"pin", pin},
                          {"messages", messages},
                          {"max_tokens", 4},
                          {"temperature", 0}};
    httplib::Client client("127.0.0.1", server_->port());
    client.set_read_timeout(std::chrono::seconds(120));
    httplib::Result result =
        client.Post("/v1/chat/completions", DumpJson(request), "application/json");
    Turn turn;
    if (!result) return turn;
    turn.status = result->status;
    turn.body = ParseJson(result->body).value_or(Json::object());
    if (turn.status == 200) {
      history = messages;
      history.push_back(turn.body["choices"][0]["message"]);
    }
    return turn;
  }

  Json Health() {
    httplib::Client client("127.0.0.1", server_->port());
    httplib::Result result = client.Get("/health");
    return result ? ParseJson(result->body).value_or(Json::object()) : Json::object();
  }

  std::unique_ptr<ServerProcess> server_;
};

TEST_F(PinnedTopicsTest, SixPinnedTopicsKeepTheirKvWhileOthersShareTheTwoThreads) {
  const Json sizing = Health()["kv_sizing"];
  EXPECT_EQ(sizing["sequences"], 10) << sizing.dump();  // 2 threads x 2 + 6 pinned
  EXPECT_EQ(sizing["pinned_sequences"], 6);
  std::vector<Json> pinned(6, Json::array()), unpinned(5, Json::array());
  std::vector<int64_t> last_prompt(6, 0);
  for (int cycle = 0; cycle < 3; ++cycle) {
    for (int topic = 0; topic < 6; ++topic) {
      const Turn turn = Ask("topic-" + std::to_string(topic), pinned[topic], topic, cycle, true);
      ASSERT_EQ(turn.status, 200) << turn.body.dump();
      const Json& usage = turn.body["usage"];
      const int64_t cached = usage["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
      if (cycle > 0) {
        // Its own sequence, untouched since its last turn: all of the last prompt is reused.
        EXPECT_EQ(turn.body["kvault"]["cache_source"], "own")
            << "topic " << topic << " cycle " << cycle << ": " << turn.body.dump();
        EXPECT_GE(cached, last_prompt[topic]) << "topic " << topic << " cycle " << cycle;
        EXPECT_GT(cached, usage["prompt_tokens"].get<int64_t>() * 3 / 4);
      }
      last_prompt[topic] = usage["prompt_tokens"].get<int64_t>();
      // Between the pinned turns, five unpinned conversations take turns on the four
      // sequences the threads have: they evict one another, never a pinned topic.
      const int other = (cycle * 6 + topic) % 5;
      const Turn side =
          Ask("other-" + std::to_string(other), unpinned[other], 10 + other, cycle, false);
      ASSERT_EQ(side.status, 200) << side.body.dump();
    }
  }
  const Json cache = Health()["cache"];
  EXPECT_EQ(cache["pinned"], 6) << cache.dump();
  EXPECT_EQ(cache["max_pinned"], 6);
  EXPECT_GT(cache["evictions"].get<int64_t>(), 0) << "the unpinned ones did not compete";

  Json seventh = Json::array();
  const Turn refused = Ask("topic-6", seventh, 6, 0, true);
  EXPECT_EQ(refused.status, 409) << refused.body.dump();
  EXPECT_EQ(refused.body["error"]["code"], "pins_exhausted") << refused.body.dump();
  // Unpinned traffic still runs, on the threads' sequences.
  Json after = Json::array();
  EXPECT_EQ(Ask("other-after", after, 20, 0, false).status, 200);
  EXPECT_EQ(Ask("topic-0", pinned[0], 0, 3, true).body["kvault"]["cache_source"], "own");
}

// `kvault bench topics` on tiny settings: a report for each server it compares. Its kvault
// halves always run; the llama-server one needs `make llama-tools`.
TEST(BenchTopicsTest, RunsTheSeedsExperimentOnTinySettings) {
  const ProcessResult bench =
      RunProcess({KvaultBinary(), "bench", "topics", "--model", TestModelPath(), "--topics", "3",
                  "--cycles", "2", "--context-tokens", "32", "--max-tokens", "2", "--json"});
  if (bench.exit_code != 0) {
    ASSERT_NE(bench.err.find("cannot start llama-server"), std::string::npos) << bench.err;
    GTEST_SKIP() << "no llama-server (make llama-tools)";
  }
  const Result<Json> report = ParseJson(bench.out);
  ASSERT_TRUE(report.ok()) << bench.out;
  const Json& run = (*report)["runs"][0];
  EXPECT_EQ(run["topics"], 3) << report->dump();
  for (const char* server : {"llama_server", "kvault_pinned", "kvault_unpinned"}) {
    const Json& cycles = run["servers"][server]["cycles"];
    ASSERT_EQ(cycles.size(), 2u) << server << ": " << report->dump();
    EXPECT_GT(cycles[0]["ttft_p50_s"].get<double>(), 0) << server;
  }
  // The pinned topics' second cycle prefills only what is new.
  const Json& pinned = run["servers"]["kvault_pinned"]["cycles"];
  EXPECT_LT(pinned[1]["prefill_tokens_mean"].get<double>(),
            pinned[0]["prefill_tokens_mean"].get<double>());
}

}  // namespace
}  // namespace kvault::testing
