// kvault bench topics: the TSCM seed's experiment. T topics, each a conversation with a long-ish
// context of its own (its system prompt), get interleaved messages: topic 1, 2, ..., T, then
// again, for --cycles cycles; one client sends them in order, each with the topic's whole
// history (as an OpenAI client does) and a short new question. Three servers get the same
// traffic, one after the other in one run:
//
//   llama_server     llama-server with one shared slot (-np 1): a topic switch is served from
//                    its prompt cache (slot states in RAM), or recomputed once that evicts;
//   kvault_pinned    kvault with --pinned-sequences T and `pin: true`: a device sequence per
//                    topic, the seed's dedicated slot;
//   kvault_unpinned  kvault, one conversation thread, no pins: topics share its two sequences
//                    and come back from the RAM tier's blocks.
//
// Reported per server and cycle: TTFT p50 / p95 / max (at the client, first content token)
// and prefill tokens per message (usage: prompt_tokens - cached_tokens); and over the warm
// cycles (every message after a topic's first) max / p50, the seed's "flat TTFT".
#include <algorithm>
#include <cstdio>
#include <random>

#include "cli/bench/bench_client.h"
#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"

#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

struct TopicsOptions : BenchOptions {
  std::vector<int> topics = {20, 40};
  int cycles = 4;
  int context_tokens = 160;
  int max_tokens = 4;
  int window = 0;            // 0 = what the longest topic needs
  int llama_cache_ram = -1;  // llama-server --cache-ram MiB; -1 = its default
};

const char* kWords[] = {"harbour", "ledger",  "orchard", "lantern", "meadow", "copper",
                        "glacier", "violin",  "canyon",  "quarry",  "saddle", "beacon",
                        "thistle", "compass", "furnace", "pebble",  "timber", "walnut",
                        "cobalt",  "falcon",  "marble",  "nectar",  "ripple", "summit"};

std::string Word(std::mt19937& rng) { return kWords[rng() % std::size(kWords)]; }

// About `tokens` tokens of the topic's own notes (no digits: Qwen spells them one by one).
std::string TopicContext(int topic, int tokens) {
  std::mt19937 rng(1000 + static_cast<uint32_t>(topic));
  std::string text =
      "You keep the notebook of topic " + std::to_string(topic) + ". Answer from these notes only:";
  for (int words = 0; words * 4 < tokens * 3; ++words) text += " " + Word(rng);
  return text + ".";
}

std::string Question(int topic, int cycle) {
  std::mt19937 rng(static_cast<uint32_t>(topic * 131 + cycle));
  return "Message " + std::to_string(cycle + 1) + " on topic " + std::to_string(topic) +
         ": what do the notes say about the " + Word(rng) + " and the " + Word(rng) + "?";
}

enum class Mode { kLlamaServer, kKvaultPinned, kKvaultUnpinned };
constexpr Mode kModes[] = {Mode::kLlamaServer, Mode::kKvaultPinned, Mode::kKvaultUnpinned};

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kLlamaServer: return "llama_server";
    case Mode::kKvaultPinned: return "kvault_pinned";
    case Mode::kKvaultUnpinned: return "kvault_unpinned";
  }
  return "";
}

// Tokens of KV one topic reaches (context, then per cycle a question, a reply and template
// tokens), with kvault's quarter of the window kept for the reply, rounded up to 256.
int WindowFor(const TopicsOptions& o) {
  if (o.window > 0) return o.window;
  const int history = 2 * o.context_tokens + o.cycles * (48 + o.max_tokens);
  return (history * 4 / 3 + 64 + 255) / 256 * 256;
}

struct Message {
  int cycle = 0;
  double ttft_s = 0;
  int prefill_tokens = 0;
};

struct Run {
  std::vector<Message> messages;
  int64_t device_evictions = -1;  // kvault: conversations that lost their device sequence
};

Result<std::unique_ptr<BenchServer>> StartServer(Mode mode, int topics, const TopicsOptions& o) {
  ServerParams params{
      .kind = mode == Mode::kLlamaServer ? ServerKind::kLlamaServer : ServerKind::kKvault,
      .model_path = o.model_path,
      .threads = o.threads,
      .window = WindowFor(o),
      .slots = 1};
  if (mode == Mode::kLlamaServer) {
    if (o.llama_cache_ram >= 0)
      params.extra_args = {"--cache-ram", std::to_string(o.llama_cache_ram)};
  } else {
    params.extra_args = o.kvault_args;
    if (mode == Mode::kKvaultPinned) {
      params.extra_args.insert(params.extra_args.end(),
                               {"--pinned-sequences", std::to_string(topics)});
    }
  }
  return BenchServer::Start(std::move(params), BenchDir::Scratch("topics", ModeName(mode)));
}

// Sends every message of the interleaved workload, in order, to a fresh server.
Result<Run> Drive(Mode mode, int topics, const TopicsOptions& o) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> server, StartServer(mode, topics, o));
  std::vector<Json> histories(static_cast<size_t>(topics), Json::array());
  Run run;
  for (int cycle = 0; cycle < o.cycles; ++cycle) {
    for (int topic = 0; topic < topics; ++topic) {
      Json& history = histories[static_cast<size_t>(topic)];
      if (history.empty()) {
        history.push_back({{"role", "system"}, {"content", TopicContext(topic, o.context_tokens)}});
      }
      history.push_back({{"role", "user"}, {"content", Question(topic, cycle)}});
      Json body = {{"model", "bench"},
                   {"messages", history},
                   {"max_tokens", o.max_tokens},
                   {"ignore_eos", true},
                   {"temperature", 0}};
      if (mode != Mode::kLlamaServer) body["conversation_id"] = "topic-" + std::to_string(topic);
      if (mode == Mode::kKvaultPinned) body["pin"] = true;
      const StreamTiming timing = StreamChat(server->port(), body, BenchClock::now(), true);
      KV_RETURN_IF_ERROR(StreamStatus(timing));
      history.push_back({{"role", "assistant"}, {"content", timing.text}});
      run.messages.push_back({.cycle = cycle,
                              .ttft_s = timing.first_token_s,
                              .prefill_tokens = timing.prompt_tokens - timing.cached_tokens});
    }
  }
  if (mode != Mode::kLlamaServer) {
    // Pinned topics should never lose their sequence; unpinned ones do at every switch.
    KV_ASSIGN_OR_RETURN(const Json health, server->GetJson("/health"));
    run.device_evictions = static_cast<int64_t>(NumberOr(health["cache"], "evictions", 0));
  }
  return run;
}

Json Stats(const std::vector<Message>& messages, int first_cycle, int last_cycle) {
  std::vector<double> ttft, prefill;
  for (const Message& m : messages) {
    if (m.cycle < first_cycle || m.cycle > last_cycle) continue;
    ttft.push_back(m.ttft_s);
    prefill.push_back(m.prefill_tokens);
  }
  const double p50 = Percentile(ttft, 50);
  const double max = ttft.empty() ? 0 : *std::max_element(ttft.begin(), ttft.end());
  return {{"messages", ttft.size()},
          {"ttft_p50_s", p50},
          {"ttft_p95_s", Percentile(ttft, 95)},
          {"ttft_max_s", max},
          {"max_over_p50", Ratio(max, p50)},
          {"prefill_tokens_mean", Summarize(prefill).mean},
          {"prefill_tokens_max",
           prefill.empty() ? 0 : *std::max_element(prefill.begin(), prefill.end())}};
}

Json ServerJson(const Run& run, int cycles) {
  const std::vector<Message>& messages = run.messages;
  Json per_cycle = Json::array();
  for (int c = 0; c < cycles; ++c) {
    Json stats = Stats(messages, c, c);
    stats["cycle"] = c + 1;
    per_cycle.push_back(std::move(stats));
  }
  Json json = {{"cycles", per_cycle}, {"warm", Stats(messages, 1, cycles - 1)}};
  if (run.device_evictions >= 0) json["device_evictions"] = run.device_evictions;
  return json;
}

Result<Json> MeasureTopics(int topics, const TopicsOptions& o) {
  Json servers = Json::object();
  for (Mode mode : kModes) {
    std::fprintf(stderr, "bench topics: %d topics, %s...\n", topics, ModeName(mode));
    KV_ASSIGN_OR_RETURN(const Run run, Drive(mode, topics, o));
    servers[ModeName(mode)] = ServerJson(run, o.cycles);
  }
  const Json& pinned = servers["kvault_pinned"]["warm"];
  const Json& llama = servers["llama_server"]["warm"];
  Json vs = Json::object();
  for (const char* key : {"ttft_p50_s", "ttft_p95_s", "ttft_max_s"}) {
    vs[key] = Ratio(NumberOr(pinned, key, 0), NumberOr(llama, key, 0));
  }
  return Json{{"topics", topics}, {"servers", servers}, {"pinned_over_llama_server_warm", vs}};
}

Result<Json> Measure(TopicsOptions o) {
  if (o.threads == 0) o.threads = DefaultThreadCount();
  if (o.cycles < 2) return InvalidArgumentError("--cycles: at least 2 (the first is cold)");
  Json runs = Json::array();
  for (int topics : o.topics) {
    if (topics < 1 || topics > 200) return InvalidArgumentError("--topics: 1 to 200 each");
    KV_ASSIGN_OR_RETURN(Json run, MeasureTopics(topics, o));
    runs.push_back(std::move(run));
  }
  return Json{{"model", o.model_path},
              {"cycles", o.cycles},
              {"context_tokens", o.context_tokens},
              {"max_tokens", o.max_tokens},
              {"window", WindowFor(o)},
              {"threads", o.threads},
              {"runs", runs}};
}

void PrintTable(const Json& report) {
  std::printf(
      "model %s, %d cycles, ~%d context tokens per topic, %d tokens per reply, window "
      "%d, %d threads\n",
      report["model"].get_ref<const std::string&>().c_str(), report["cycles"].get<int>(),
      report["context_tokens"].get<int>(), report["max_tokens"].get<int>(),
      report["window"].get<int>(), report["threads"].get<int>());
  for (const Json& run : report["runs"]) {
    std::printf("\n%d topics\n%-16s %6s %10s %10s %10s %8s %13s\n", run["topics"].get<int>(),
                "server", "cycle", "p50 s", "p95 s", "max s", "max/p50", "prefill/msg");
    for (Mode mode : kModes) {
      const Json& server = run["servers"][ModeName(mode)];
      auto row = [&](const std::string& cycle, const Json& s) {
        std::printf("%-16s %6s %10.3f %10.3f %10.3f %8.2f %13.1f\n", ModeName(mode), cycle.c_str(),
                    NumberOr(s, "ttft_p50_s", 0), NumberOr(s, "ttft_p95_s", 0),
                    NumberOr(s, "ttft_max_s", 0), NumberOr(s, "max_over_p50", 0),
                    NumberOr(s, "prefill_tokens_mean", 0));
      };
      for (const Json& c : server["cycles"]) row(std::to_string(c["cycle"].get<int>()), c);
      row("warm", server["warm"]);
    }
    const Json& vs = run["pinned_over_llama_server_warm"];
    std::printf("kvault pinned / llama-server, warm cycles: p50 %.3f, p95 %.3f, max %.3f\n",
                NumberOr(vs, "ttft_p50_s", 0), NumberOr(vs, "ttft_p95_s", 0),
                NumberOr(vs, "ttft_max_s", 0));
  }
}

}  // namespace

int RunBenchTopics(int argc, char** argv) {
  CLI::App app("Interleaved topics (TSCM): TTFT per cycle, pinned vs unpinned vs llama-server.",
               "bench topics");
  TopicsOptions o;
  AddModelOption(app, o);
  app.add_option("--topics", o.topics, "topic counts, one run each, e.g. 20,40")
      ->delimiter(',')
      ->capture_default_str();
  AddBoundedOption(app, "--cycles", o.cycles, "messages per topic (the first is cold)", 2, 100);
  AddBoundedOption(app, "--context-tokens", o.context_tokens,
                   "tokens of each topic's own context (about)", 8, 1 << 15);
  AddBoundedOption(app, "--max-tokens", o.max_tokens, "tokens generated per message", 1, 1024);
  AddBoundedOption(app, "--window", o.window,
                   "tokens per sequence (kvault --window; llama-server -c); 0 = what a topic "
                   "needs",
                   0, 1 << 20);
  AddBoundedOption(app, "--llama-cache-ram", o.llama_cache_ram,
                   "llama-server --cache-ram MiB (its prompt cache); -1 = its default", -1,
                   1 << 20);
  AddThreadsOption(app, o);
  AddKvaultArgsOption(app, o);
  return RunDriver(
      app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
}

}  // namespace kvault::cli
