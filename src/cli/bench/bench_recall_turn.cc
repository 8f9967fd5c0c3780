// kvault bench recall-turn: time to first token of the turns of a very long conversation
// (--tokens, 1M by default) that recall ~--recall-budget tokens of its history, with
// --recall-kv off (the recalled chunks prefilled as text) and with --recall-kv reuse (their
// KV, kept from when they were in the window, shifted into place), side by side in one run,
// beside a turn of the same conversation that recalls nothing ("recall": false).
//
// The history: generated dialogue (testing/dialogue_generator) with --facts planted facts.
// Each fact is said in a live session (the fact, then kLiveTurns more about the same
// subject, each answered), so that stretch passed through the window as in a conversation
// held live, and its KV was kept; the filler around the sessions is appended in bulk (POST
// /v1/conversations/append: no KV is computed, as for history imported from elsewhere). A
// question about a fact then recalls chunks of its session. Both servers get the same
// history and the same turns, alternately, one at a time, after a warm-up turn each.
//
// Measured at the client (streamed): per turn type and mode, TTFT mean and each value; the
// recalled tokens materialized and prefilled (/v1/cache/stats deltas); the pause of a
// mid-generation recall (a grammar forces a hedge: the longest gap between streamed pieces);
// the kept history KV per token (RAM and disk: the tiers hold the same encoded bytes) and
// what a 1M-token conversation held live would keep.
#include <algorithm>
#include <cstdio>
#include <random>

#include "cli/bench/bench_client.h"
#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"
#include <httplib.h>

#include "kvault/base/status_macros.h"
#include "kvault/testing/dialogue_generator.h"

namespace kvault::cli {
namespace {

using testing::DialogueGenerator;
using testing::PlantedFact;

struct RecallTurnOptions : BenchOptions {
  int64_t tokens = 1'000'000;
  int window = 4096;
  int facts = 4;
};

constexpr int kLiveTurnsAfterFact = 8;
constexpr double kTokensPerWord = 1.4;  // generated dialogue, Qwen2 vocabulary (measured)

struct Server {
  std::string mode;
  std::unique_ptr<BenchServer> server;
  std::vector<double> recall_ttft, plain_ttft;
  double pause_s = 0;
  Json before;  // recall_kv stats before the measured turns
};

Json Message(const std::string& role, const std::string& text) {
  return {{"role", role}, {"content", text}};
}

Status Post(const BenchServer& server, const std::string& path, const Json& body) {
  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(std::chrono::seconds(3600));
  httplib::Result result = client.Post(path, DumpJson(body), "application/json");
  if (!result) return UnavailableError(path + ": no reply");
  if (result->status != 200) {
    return InternalError(path + " answered " + std::to_string(result->status) + ": " +
                         result->body.substr(0, 500));
  }
  return Status::Ok();
}

Result<StreamTiming> Turn(const BenchServer& server, const std::string& text, Json extra = {}) {
  Json body = {{"conversation_id", "long"},
               {"messages", Json::array({Message("user", text)})},
               {"max_tokens", 8},
               {"temperature", 0}};
  if (extra.is_object()) body.update(extra);
  return server.Chat(body);
}

// Filler messages of about `tokens` tokens, user first, ending with the assistant.
Json Filler(DialogueGenerator& generator, int64_t tokens) {
  Json messages = Json::array();
  int64_t n = 0;
  while (n < tokens || messages.size() % 2 == 1) {
    const std::string text = generator.NextTurn().text;
    n += static_cast<int64_t>(kTokensPerWord *
                              static_cast<double>(std::count(text.begin(), text.end(), ' ') + 1)) +
         5;
    messages.push_back(Message(messages.size() % 2 == 0 ? "user" : "assistant", text));
  }
  return messages;
}

Result<Json> RecallStats(const BenchServer& server) {
  KV_ASSIGN_OR_RETURN(Json stats, server.GetJson("/v1/cache/stats"));
  return stats["recall_kv"];
}

double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

Result<Json> Measure(RecallTurnOptions o) {
  if (o.threads == 0) o.threads = DefaultThreadCount();
  std::vector<Server> servers;
  for (const std::string mode : {"off", "reuse"}) {
    KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> server,
                        BenchServer::Start({.model_path = o.model_path,
                                            .threads = o.threads,
                                            .window = o.window,
                                            .extra_args = {"--max-body-mb", "1024", "--recall-kv",
                                                           mode, "--max-recalls", "1"}},
                                           BenchDir::Scratch("recall-turn", mode)));
    servers.push_back({mode, std::move(server)});
  }
  // The same history for both: filler in bulk, each fact in live turns.
  DialogueGenerator generator(17);
  std::vector<PlantedFact> facts;
  const int64_t segment = o.tokens / (o.facts + 1);
  std::fprintf(stderr, "recall-turn: building a %lld-token conversation on both servers\n",
               static_cast<long long>(o.tokens));
  for (int f = 0; f <= o.facts; ++f) {
    const Json filler = Filler(generator, segment);
    std::vector<std::string> live;
    if (f < o.facts) {
      facts.push_back(generator.NextFact());
      live.push_back(facts.back().statement);
      // The session goes on about the fact's subject (the question's words), as people do.
      std::string subject = facts.back().question;
      if (!subject.empty() && subject.back() == '?') subject.pop_back();
      for (int i = 0; i < kLiveTurnsAfterFact; ++i) {
        generator.NextTurn();  // an assistant line, replaced by the server's own reply
        live.push_back("Still on " + subject + ": " + generator.NextTurn().text);
      }
      live.push_back("Thanks, that is all for now.");
    }
    for (Server& s : servers) {
      Json body = {{"conversation_id", "long"}, {"messages", filler}, {"history", "append"}};
      if (f == 0) {
        body["messages"].insert(body["messages"].begin(),
                                Message("system", "You are a helpful long-term companion."));
      }
      KV_RETURN_IF_ERROR(Post(*s.server, "/v1/conversations/append", body));
      for (const std::string& text : live) {
        KV_ASSIGN_OR_RETURN(const StreamTiming t, Turn(*s.server, text));
        KV_RETURN_IF_ERROR(StreamStatus(t));
      }
    }
  }
  for (Server& s : servers) {
    // Warm-up: the first turn after a bulk append prefills a whole new window.
    KV_ASSIGN_OR_RETURN(const StreamTiming warm,
                        Turn(*s.server, generator.NextTurn().text, {{"recall", false}}));
    KV_RETURN_IF_ERROR(StreamStatus(warm));
    KV_ASSIGN_OR_RETURN(s.before, RecallStats(*s.server));
  }
  // The measured turns, alternately on the two servers: a turn that recalls nothing, then
  // one asking about a fact.
  for (int f = 0; f < o.facts; ++f) {
    for (size_t k = 0; k < servers.size(); ++k) {
      Server& s = servers[(k + static_cast<size_t>(f)) % servers.size()];
      KV_ASSIGN_OR_RETURN(const StreamTiming plain,
                          Turn(*s.server, generator.NextTurn().text, {{"recall", false}}));
      KV_RETURN_IF_ERROR(StreamStatus(plain));
      s.plain_ttft.push_back(plain.first_token_s);
      KV_ASSIGN_OR_RETURN(const StreamTiming recall, Turn(*s.server, facts[f].question));
      KV_RETURN_IF_ERROR(StreamStatus(recall));
      s.recall_ttft.push_back(recall.first_token_s);
    }
  }
  Json rows = Json::array();
  for (Server& s : servers) {
    KV_ASSIGN_OR_RETURN(const Json after, RecallStats(*s.server));
    auto delta = [&](const char* key) {
      return NumberOr(after, key, 0) - NumberOr(s.before, key, 0);
    };
    const double materialized = delta("materialized_tokens");
    const double prefilled = delta("prefilled_tokens");
    // Mid-generation recall: a question that names nothing, and a reply the grammar makes
    // name the fact's subject and then hedge ("if I recall"): the search for the question and
    // the reply so far recalls the fact's session. The pause is the longest gap between
    // streamed pieces: from the hedge to the resumed reply.
    std::string subject = facts[0].question;
    subject.erase(std::remove_if(subject.begin(), subject.end(),
                                 [](char c) { return c == '?' || c == '"' || c == '\\'; }),
                  subject.end());
    KV_ASSIGN_OR_RETURN(
        const StreamTiming hedged,
        Turn(*s.server, "Tell me more.",
             {{"grammar", "root ::= \"Well, " + subject + ", if I recall, it is what you said.\""},
              {"max_tokens", 64}}));
    KV_RETURN_IF_ERROR(StreamStatus(hedged));
    double pause = 0;
    for (size_t i = 1; i < hedged.event_times_s.size(); ++i) {
      pause = std::max(pause, hedged.event_times_s[i] - hedged.event_times_s[i - 1]);
    }
    const double kept_per_token = NumberOr(after, "kept_bytes_per_token", 0);
    rows.push_back({{"recall_kv", s.mode},
                    {"recall_turn_ttft_s", s.recall_ttft},
                    {"plain_turn_ttft_s", s.plain_ttft},
                    {"recall_turn_ttft_mean_s", Mean(s.recall_ttft)},
                    {"plain_turn_ttft_mean_s", Mean(s.plain_ttft)},
                    {"ratio", Mean(s.recall_ttft) / std::max(Mean(s.plain_ttft), 1e-9)},
                    {"recalled_tokens_materialized_per_turn", materialized / o.facts},
                    {"recalled_tokens_prefilled_per_turn", prefilled / o.facts},
                    {"mid_generation_pause_s", pause},
                    {"kept_spans", NumberOr(after, "kept_spans", 0)},
                    {"kept_bytes", NumberOr(after, "kept_bytes", 0)},
                    {"kept_bytes_per_token", kept_per_token},
                    {"kept_bytes_for_1m_tokens", kept_per_token * 1e6},
                    {"encoding", after.value("encoding", "")}});
  }
  return Json{{"model", o.model_path},
              {"history_tokens", o.tokens},
              {"window", o.window},
              {"facts", o.facts},
              {"results", rows}};
}

void PrintTable(const Json& r) {
  std::printf("model %s, %lld-token conversation, window %d, %d recalling turns a mode\n",
              r["model"].get_ref<const std::string&>().c_str(),
              static_cast<long long>(NumberOr(r, "history_tokens", 0)), r["window"].get<int>(),
              r["facts"].get<int>());
  std::printf("%-8s %12s %12s %7s %14s %14s %10s %12s\n", "recall", "recall TTFT", "plain TTFT",
              "ratio", "materialized", "prefilled", "mid pause", "kept B/tok");
  for (const Json& row : r["results"]) {
    std::printf(
        "%-8s %11.2fs %11.2fs %6.2fx %14.0f %14.0f %9.2fs %12.0f\n",
        row["recall_kv"].get<std::string>().c_str(), NumberOr(row, "recall_turn_ttft_mean_s", 0),
        NumberOr(row, "plain_turn_ttft_mean_s", 0), NumberOr(row, "ratio", 0),
        NumberOr(row, "recalled_tokens_materialized_per_turn", 0),
        NumberOr(row, "recalled_tokens_prefilled_per_turn", 0),
        NumberOr(row, "mid_generation_pause_s", 0), NumberOr(row, "kept_bytes_per_token", 0));
  }
}

}  // namespace

int RunBenchRecallTurn(int argc, char** argv) {
  CLI::App app("TTFT of turns of a long conversation that recall history: KV reuse vs prefill.",
               "bench recall-turn");
  RecallTurnOptions o;
  AddModelOption(app, o);
  AddBoundedOption(app, "--tokens", o.tokens, "tokens of history", 10'000, 100'000'000);
  AddBoundedOption(app, "--window", o.window, "kvault --window", 512, 1 << 20);
  AddBoundedOption(app, "--facts", o.facts, "facts planted, and recalling turns per mode", 1, 16);
  AddThreadsOption(app, o);
  return RunDriver(
      app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
}

}  // namespace kvault::cli
