// kvault bench resume: time to first token when conversations come back, per way of keeping
// their KV, next to llama-server (same llama.cpp source, model, threads and requests).
//
// Workload: N conversations, each with a history of about H tokens (a shared system prompt,
// then its own dialogue), are created once per mode (not timed). Then, for each round, every
// conversation in turn sends one follow-up (its whole history as OpenAI messages, plus a new
// question of about F tokens) and the time to its first streamed token is measured at the
// client. Requests run one at a time; with --conversation-threads T the server keeps at most
// 2T sequences on the device, so with N > 2T every follow-up finds its conversation evicted
// from the device and the mode decides where its KV comes from:
//
//   kvault-ram         RAM tier (ample budget, no disk tier)
//   kvault-disk        RAM budget for about 2 of the N conversations; the rest from disk
//   kvault-restart     the server restarts before each round: every follow-up after a restart
//                      comes from disk (the page cache may still hold the files; stated)
//   kvault-remote      several replicas sharing a Redis (a real redis-server the bench starts):
//                      before each round a fresh replica with empty local folders takes
//                      over, so every follow-up restores its KV from Redis (issue 12)
//   kvault-off         --restore never: every prompt prefilled in full
//   llama-server       its defaults (--cache-ram 8192 MiB host prompt cache)
//   llama-server-ram0  --cache-ram 0 (no host prompt cache)
//   llama-server-small --cache-ram equal to kvault-disk's RAM budget
//
// Clients send back the reply each server generated (temperature 0), as a chat client does.
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>

#include "cli/bench/bench_client.h"
#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"
#include <httplib.h>

#include "kvault/base/status_macros.h"
#include "kvault/engine/model.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/testing/redis_server.h"

namespace kvault::cli {
namespace {

struct ResumeOptions : BenchOptions {
  int conversations = 8;
  int history = 2000;
  int rounds = 3;
  int conversation_threads = 2;
  int followup = 70;
  int max_tokens = 16;
  int window = 4096;
  int small_ram_mb = 0;  // 0 = enough for 2 conversations, from kvault-ram's measurement
  std::vector<std::string> modes = {"kvault-ram",        "kvault-disk",  "kvault-restart",
                                    "kvault-off",        "llama-server", "llama-server-ram0",
                                    "llama-server-small"};
};

const char* kWords[] = {
    "harbor", "lantern", "copper", "meadow", "ledger", "signal", "orchard", "glacier", "timber",
    "canvas", "pilot",   "quartz", "violet", "engine", "market", "summit",  "ribbon",  "falcon",
    "garden", "cobalt",  "island", "museum", "pepper", "rocket", "saddle",  "tunnel",  "walnut",
    "anchor", "basket",  "candle", "desert", "forest", "hammer", "jungle",  "kettle",  "mirror"};

// A sentence of about `words` words, deterministic in `rng`.
std::string Sentence(std::mt19937& rng, int words) {
  std::string text;
  for (int i = 0; i < words; ++i) {
    text += (i ? " " : "") + std::string(kWords[rng() % std::size(kWords)]);
    if (rng() % 7 == 0) text += " " + std::to_string(rng() % 1000);
  }
  return text + ".";
}

struct Conversation {
  Json messages = Json::array();
  std::mt19937 rng;
};

// A system prompt shared by all, then user/assistant turns until about `history` tokens.
Result<std::vector<Conversation>> MakeConversations(const ResumeOptions& options) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model,
                      engine::Model::Load({.path = options.model_path, .vocab_only = true}));
  const engine::Tokenizer tokenizer(*model);
  std::mt19937 shared_rng(7);
  std::string system = "You are a helpful assistant for a logistics company.";
  for (int i = 0; i < 6; ++i) system += " " + Sentence(shared_rng, 18);
  std::vector<Conversation> conversations(static_cast<size_t>(options.conversations));
  for (size_t c = 0; c < conversations.size(); ++c) {
    Conversation& conversation = conversations[c];
    conversation.rng.seed(static_cast<uint32_t>(1000 + c));
    conversation.messages.push_back({{"role", "system"}, {"content", system}});
    int tokens = static_cast<int>(tokenizer.Tokenize(system).value().size());
    for (int turn = 0; tokens < options.history; ++turn) {
      const std::string text = Sentence(conversation.rng, 40);
      tokens += static_cast<int>(tokenizer.Tokenize(text).value().size()) + 5;
      conversation.messages.push_back(
          {{"role", turn % 2 ? "assistant" : "user"}, {"content", text}});
    }
    if (conversation.messages.back()["role"] == "user") {
      conversation.messages.push_back({{"role", "assistant"}, {"content", "Noted."}});
    }
  }
  return conversations;
}

// One follow-up: the question is appended, the reply too (as a client keeps its history).
Result<StreamTiming> FollowUp(int port, int index, Conversation& conversation,
                              const ResumeOptions& options) {
  conversation.messages.push_back(
      {{"role", "user"}, {"content", Sentence(conversation.rng, options.followup * 3 / 4)}});
  const Json body = {{"model", "bench"},
                     {"messages", conversation.messages},
                     {"max_tokens", options.max_tokens},
                     {"temperature", 0},
                     {"conversation_id", "resume-" + std::to_string(index)}};
  StreamTiming timing = StreamChat(port, body, BenchClock::now());
  KV_RETURN_IF_ERROR(StreamStatus(timing));
  conversation.messages.push_back({{"role", "assistant"}, {"content", timing.text}});
  return timing;
}

struct ModeResult {
  std::vector<double> ttft_s;
  std::vector<double> cached_fraction;
  std::vector<double> uncached_tokens;  // prompt tokens the server computed
  Json cache_stats;                     // kvault's /v1/cache/stats at the end
};

class ModeRunner {
 public:
  ModeRunner(const ResumeOptions& options, std::string mode, int small_ram_mb)
      : options_(options),
        mode_(std::move(mode)),
        small_ram_mb_(small_ram_mb),
        state_(BenchDir::Scratch("resume", mode_)) {}

  Result<ModeResult> Run() {
    KV_ASSIGN_OR_RETURN(std::vector<Conversation> conversations, MakeConversations(options_));
    if (mode_ == "kvault-remote") {
      if (!testing::RedisServer::Available()) {
        return FailedPreconditionError("kvault-remote needs redis-server (scripts/bootstrap.sh)");
      }
      redis_ = std::make_unique<testing::RedisServer>();
      if (!redis_->Start()) return UnavailableError("redis-server did not start");
    }
    KV_RETURN_IF_ERROR(Start());
    for (size_t c = 0; c < conversations.size(); ++c) {  // the histories, once, untimed
      KV_RETURN_IF_ERROR(
          FollowUp(server_->port(), static_cast<int>(c), conversations[c], options_).status());
    }
    ModeResult result;
    for (int round = 0; round < options_.rounds; ++round) {
      if (mode_ == "kvault-restart") KV_RETURN_IF_ERROR(Start());
      if (mode_ == "kvault-remote") {
        ++replica_;  // another replica, nothing local: the KV comes from Redis
        KV_RETURN_IF_ERROR(Start());
      }
      for (size_t c = 0; c < conversations.size(); ++c) {
        KV_ASSIGN_OR_RETURN(StreamTiming timing, FollowUp(server_->port(), static_cast<int>(c),
                                                          conversations[c], options_));
        result.ttft_s.push_back(timing.first_token_s);
        result.cached_fraction.push_back(Ratio(timing.cached_tokens, timing.prompt_tokens));
        result.uncached_tokens.push_back(timing.prompt_tokens - timing.cached_tokens);
      }
    }
    if (mode_.starts_with("kvault")) {
      httplib::Client client("127.0.0.1", server_->port());
      httplib::Result stats = client.Get("/v1/cache/stats");
      if (stats && stats->status == 200) {
        result.cache_stats = ParseJson(stats->body).value_or(Json::object());
      }
    }
    server_.reset();
    return result;
  }

 private:
  // The mode's server: kvault keeps its state in state_ across restarts.
  ServerParams Params() const {
    ServerParams params{.model_path = options_.model_path,
                        .threads = options_.threads,
                        .window = options_.window,
                        .slots = options_.conversation_threads,
                        .log_path = state_->log_path()};
    std::vector<std::string>& extra = params.extra_args;
    if (!mode_.starts_with("kvault")) {
      params.kind = ServerKind::kLlamaServer;
      if (mode_ == "llama-server-ram0") extra = {"--cache-ram", "0"};
      if (mode_ == "llama-server-small") extra = {"--cache-ram", std::to_string(small_ram_mb_)};
      return params;
    }
    params.state_dir = state_->path();
    if (mode_ == "kvault-remote") {
      params.state_dir += "/replica-" + std::to_string(replica_);
      extra = {"--remote-url", redis_->url()};
    }
    if (mode_ == "kvault-ram") extra = {"--cache-disk-gb", "0"};
    if (mode_ == "kvault-disk") extra = {"--cache-ram-mb", std::to_string(small_ram_mb_)};
    if (mode_ == "kvault-off") extra = {"--restore", "never"};
    return params;
  }

  Status Start() {
    server_.reset();  // a restart keeps the state folder
    KV_ASSIGN_OR_RETURN(server_, BenchServer::Start(Params()));
    return Status::Ok();
  }

  const ResumeOptions& options_;
  const std::string mode_;
  const int small_ram_mb_;
  const std::unique_ptr<BenchDir> state_;        // outlives server_
  std::unique_ptr<testing::RedisServer> redis_;  // kvault-remote's; outlives server_
  int replica_ = 0;                              // kvault-remote: which replica serves
  std::unique_ptr<BenchServer> server_;
};

Json ModeJson(const std::string& mode, const ModeResult& r) {
  const double p50 = Percentile(r.ttft_s, 50), p95 = Percentile(r.ttft_s, 95);
  return {{"mode", mode},
          {"ttft_p50_s", p50},
          {"ttft_p95_s", p95},
          {"p95_over_p50", Ratio(p95, p50)},
          {"ttft_mean_s", Summarize(r.ttft_s).mean},
          {"cached_fraction", Summarize(r.cached_fraction).mean},
          {"uncached_tokens_mean", Summarize(r.uncached_tokens).mean},
          {"requests", r.ttft_s.size()}};
}

Result<Json> Measure(ResumeOptions options) {
  if (options.threads == 0) options.threads = DefaultThreadCount();
  std::map<std::string, ModeResult> results;
  int small_ram_mb = options.small_ram_mb;
  Json report_modes = Json::array();
  for (const std::string& mode : options.modes) {
    if (small_ram_mb == 0 && (mode == "kvault-disk" || mode == "llama-server-small")) {
      // Two conversations' worth of the RAM tier kvault-ram ended with.
      const Json& stats = results.count("kvault-ram") ? results["kvault-ram"].cache_stats : Json();
      const double ram = stats.is_object() ? NumberOr(stats["tiers"]["ram"], "bytes", 0) : 0;
      if (ram <= 0) {
        return InvalidArgumentError("--small-ram-mb is needed unless kvault-ram runs first");
      }
      small_ram_mb = std::max(1, static_cast<int>(ram / options.conversations * 2 / (1 << 20)));
    }
    std::fprintf(stderr, "bench resume: %s...\n", mode.c_str());
    ModeRunner runner(options, mode, small_ram_mb);
    Result<ModeResult> result = runner.Run();
    if (!result.ok()) return result.status().WithPrefix(mode);
    results[mode] = *result;
    report_modes.push_back(ModeJson(mode, *result));
    if (result->cache_stats.is_object()) report_modes.back()["cache"] = result->cache_stats;
  }
  auto p50 = [&](const std::string& mode) {
    return results.count(mode) ? Percentile(results[mode].ttft_s, 50) : 0.0;
  };
  const Json ratios = {
      {"kvault_ram_vs_llama_server_default", Ratio(p50("kvault-ram"), p50("llama-server"))},
      {"llama_server_small_vs_kvault_disk", Ratio(p50("llama-server-small"), p50("kvault-disk"))},
      {"kvault_restart_vs_kvault_ram", Ratio(p50("kvault-restart"), p50("kvault-ram"))},
      {"kvault_remote_vs_kvault_ram", Ratio(p50("kvault-remote"), p50("kvault-ram"))},
      {"kvault_off_vs_kvault_remote", Ratio(p50("kvault-off"), p50("kvault-remote"))},
      {"kvault_off_vs_kvault_ram", Ratio(p50("kvault-off"), p50("kvault-ram"))}};
  return Json{{"model", options.model_path},
              {"conversations", options.conversations},
              {"history_tokens", options.history},
              {"rounds", options.rounds},
              {"conversation_threads", options.conversation_threads},
              {"threads", options.threads},
              {"small_ram_mb", small_ram_mb},
              {"modes", report_modes},
              {"ratios", ratios}};
}

void PrintTable(const Json& report) {
  std::printf(
      "model %s, %d conversations x ~%d tokens, %d rounds, %d conversation threads, "
      "%d threads, small RAM %d MiB\n",
      report["model"].get_ref<const std::string&>().c_str(), report["conversations"].get<int>(),
      report["history_tokens"].get<int>(), report["rounds"].get<int>(),
      report["conversation_threads"].get<int>(), report["threads"].get<int>(),
      report["small_ram_mb"].get<int>());
  std::printf("%-20s %12s %12s %8s %8s %9s\n", "mode", "TTFT p50 s", "TTFT p95 s", "p95/p50",
              "cached", "computed");
  for (const Json& m : report["modes"]) {
    std::printf("%-20s %12.3f %12.3f %8.2f %7.0f%% %9.1f\n", m["mode"].get<std::string>().c_str(),
                NumberOr(m, "ttft_p50_s", 0), NumberOr(m, "ttft_p95_s", 0),
                NumberOr(m, "p95_over_p50", 0), 100 * NumberOr(m, "cached_fraction", 0),
                NumberOr(m, "uncached_tokens_mean", 0));
  }
  const Json& ratios = report["ratios"];
  for (auto it = ratios.begin(); it != ratios.end(); ++it) {
    std::printf("%-36s %.3f\n", it.key().c_str(), it.value().get<double>());
  }
}

}  // namespace

int RunBenchResume(int argc, char** argv) {
  CLI::App app("Time to first token of resumed conversations: kvault's tiers vs llama-server.",
               "bench resume");
  ResumeOptions o;
  AddModelOption(app, o);
  AddBoundedOption(app, "--conversations", o.conversations, "conversations", 1, 256);
  AddBoundedOption(app, "--history", o.history, "tokens of history per conversation", 16, 1 << 20);
  AddBoundedOption(app, "--rounds", o.rounds, "follow-ups per conversation", 1, 100);
  AddBoundedOption(app, "--conversation-threads", o.conversation_threads,
                   "server slots (kvault --conversation-threads, llama-server -np)", 1, 64);
  AddBoundedOption(app, "--followup", o.followup, "tokens of each follow-up question (about)", 1,
                   4096);
  AddBoundedOption(app, "--max-tokens", o.max_tokens, "tokens generated per reply", 1, 4096);
  AddBoundedOption(app, "--window", o.window,
                   "tokens per sequence (kvault --window; llama-server -c/np)", 256, 1 << 20);
  app.add_option("--small-ram-mb", o.small_ram_mb,
                 "RAM budget of kvault-disk and llama-server-small; 0 = two conversations' worth")
      ->capture_default_str();
  app.add_option("--modes", o.modes, "modes to run, comma-separated")
      ->delimiter(',')
      ->capture_default_str()
      ->check(
          CLI::IsMember({"kvault-ram", "kvault-disk", "kvault-restart", "kvault-remote",
                         "kvault-off", "llama-server", "llama-server-ram0", "llama-server-small"}));
  AddThreadsOption(app, o);
  return RunDriver(
      app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
}

int RunBenchCluster(int argc, char** argv) {
  // bench resume's workload with the modes that compare resuming on another replica (from
  // the shared Redis) with the local RAM tier and with re-prefill; --modes still overrides.
  std::vector<char*> args(argv, argv + argc);
  bool has_modes = false;
  for (int i = 1; i < argc; ++i) has_modes = has_modes || std::strncmp(argv[i], "--modes", 7) == 0;
  static char modes_flag[] = "--modes";
  static char modes[] = "kvault-ram,kvault-remote,kvault-off";
  if (!has_modes) args.insert(args.begin() + 1, {modes_flag, modes});
  return RunBenchResume(static_cast<int>(args.size()), args.data());
}

}  // namespace kvault::cli
