// kvault bench footprint: what cached KV costs in memory, and what that costs in speed.
//
//   sharing    --conversations conversations share a --system-tokens system prompt and add
//              --own-tokens each. kvault's RAM tier holds the shared blocks once; reported
//              against N full copies, and against llama-server's host prompt cache (its
//              "cache state" log line, -v) after the same requests.
//   encodings  for each --encodings at rest: RAM bytes per cached token, and how many
//              conversations of --own-tokens + --system-tokens tokens fit in 1 GiB without
//              sharing.
//   speed      llama.cpp's quantized compute caches (--kv-cache-dtype q8_0 / q4_0) against f16:
//              time to first token of a cold prompt of system + own tokens (prefill), and of
//              the same prompt restored from kvault's RAM tier at each at-rest encoding
//              (q8/q4 at rest decode to f16: the compute stays f16).
#include <cstdio>
#include <cstdlib>
#include <random>
#include <regex>

#include "cli/bench/bench_client.h"
#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"

#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

struct FootprintOptions : BenchOptions {
  int conversations = 8;
  int system_tokens = 1000;
  int own_tokens = 1000;
  std::vector<std::string> encodings = {"f16", "q8", "q4", "q8+zstd"};
  bool skip_llama_server = false;
};

const char* kWords[] = {"river", "ledger", "signal", "orchard", "glacier", "timber", "canvas",
                        "pilot", "quartz", "violet", "engine",  "market",  "summit", "ribbon"};

// About `tokens` tokens of text (about 1.3 words a token... for these words, ~1 token each).
std::string Text(uint32_t seed, int tokens) {
  std::mt19937 rng(seed);
  std::string text;
  for (int i = 0; i < tokens * 9 / 10; ++i) text += std::string(i ? " " : "") + kWords[rng() % 14];
  return text + ".";
}

Json Body(const FootprintOptions& o, int i, bool with_id) {
  Json body = {
      {"messages",
       {{{"role", "system"}, {"content", Text(1, o.system_tokens)}},
        {{"role", "user"}, {"content", Text(100 + static_cast<uint32_t>(i), o.own_tokens)}}}},
      {"max_tokens", 1},
      {"temperature", 0}};
  if (with_id) body["conversation_id"] = "footprint-" + std::to_string(i);
  return body;
}

// A fresh server for one measurement: one slot with a window for one conversation, kvault's
// RAM tier alone, llama-server verbose (its "cache state" lines); `extra` flags appended. Its
// log goes with it unless KVAULT_BENCH_KEEP_LOGS is set.
Result<std::unique_ptr<BenchServer>> StartServer(const FootprintOptions& o, bool kvault,
                                                 std::vector<std::string> extra) {
  if (kvault) {
    extra.insert(extra.begin(), {"--cache-disk-gb", "0"});
  } else {
    extra.insert(extra.begin(), "-v");
  }
  return BenchServer::Start({.kind = kvault ? ServerKind::kKvault : ServerKind::kLlamaServer,
                             .model_path = o.model_path,
                             .threads = o.threads,
                             .window = o.system_tokens + o.own_tokens + 512,
                             .slots = 1,
                             .extra_args = std::move(extra)},
                            BenchDir::Scratch("footprint"));
}

struct EncodingRow {
  std::string encoding;
  double ram_bytes = 0;
  double cached_tokens = 0;  // distinct tokens cached
  double bytes_per_token = 0;
  double conversations_per_gib = 0;
  double restore_ttft_s = 0;  // conversation 0 again (the same request), from RAM
};

Result<EncodingRow> MeasureEncoding(const FootprintOptions& o, const std::string& encoding) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> server,
                      StartServer(o, true, {"--cache-encoding", encoding}));
  for (int i = 0; i < o.conversations; ++i) {
    KV_RETURN_IF_ERROR(server->Chat(Body(o, i, true)).status());
  }
  KV_ASSIGN_OR_RETURN(Json stats, server->GetJson("/v1/cache/stats"));
  EncodingRow row;
  row.encoding = encoding;
  row.ram_bytes = NumberOr(stats["tiers"]["ram"], "bytes", 0);
  // The shared system prompt once, each conversation's own part once.
  row.cached_tokens = o.system_tokens + static_cast<double>(o.conversations) * o.own_tokens;
  row.bytes_per_token = row.ram_bytes / row.cached_tokens;
  row.conversations_per_gib =
      (1ull << 30) / (row.bytes_per_token * (o.system_tokens + o.own_tokens));
  // Conversation 0 again (the same request): it left the device long ago (one conversation
  // thread = 2 sequences), so its KV comes back from RAM.
  KV_ASSIGN_OR_RETURN(StreamTiming restored, server->Chat(Body(o, 0, true)));
  row.restore_ttft_s = restored.first_token_s;
  return row;
}

// TTFT of a cold prompt (system + own tokens) with llama.cpp's cache type `dtype`.
Result<double> ColdTtft(const FootprintOptions& o, const std::string& dtype) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> server,
                      StartServer(o, true, {"--kv-cache-dtype", dtype, "--restore", "never"}));
  KV_RETURN_IF_ERROR(server->Chat(Body(o, 900, false)).status());  // warm-up
  KV_ASSIGN_OR_RETURN(StreamTiming timing, server->Chat(Body(o, 901, false)));
  return timing.first_token_s;
}

// llama-server after the same requests: its host prompt cache ("cache state: N prompts, X
// MiB" in its log, -v), and the time to first token of conversation 0 again. It reuses its
// slot for a prompt that shares enough with the slot's (the system prompt here), so it keeps
// only the latest conversation's own part.
struct LlamaServerFootprint {
  double cache_mib = 0;
  int cache_prompts = 0;
  double revisit_ttft_s = 0;
};

Result<LlamaServerFootprint> MeasureLlamaServer(const FootprintOptions& o) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> server, StartServer(o, false, {}));
  for (int i = 0; i < o.conversations; ++i) {
    KV_RETURN_IF_ERROR(server->Chat(Body(o, i, false)).status());
  }
  LlamaServerFootprint footprint;
  KV_ASSIGN_OR_RETURN(StreamTiming revisit, server->Chat(Body(o, 0, false)));
  footprint.revisit_ttft_s = revisit.first_token_s;
  const std::string log = server->ReadLog();
  const std::regex state("cache state: ([0-9]+) prompts, ([0-9.]+) MiB");
  footprint.cache_mib = -1;
  for (std::sregex_iterator it(log.begin(), log.end(), state), end; it != end; ++it) {
    footprint.cache_prompts = std::stoi((*it)[1]);
    footprint.cache_mib = std::stod((*it)[2]);
  }
  if (footprint.cache_mib < 0) return InternalError("no 'cache state' line in llama-server's log");
  return footprint;
}

Result<Json> Measure(FootprintOptions o) {
  if (o.encodings.empty() || o.encodings[0] != "f16") {
    return InvalidArgumentError("--encodings must start with f16 (the reference)");
  }
  if (o.threads == 0) o.threads = DefaultThreadCount();
  Json encodings = Json::array();
  for (const std::string& encoding : o.encodings) {
    std::fprintf(stderr, "bench footprint: kvault --cache-encoding %s...\n", encoding.c_str());
    KV_ASSIGN_OR_RETURN(const EncodingRow row, MeasureEncoding(o, encoding));
    encodings.push_back({{"encoding", row.encoding},
                         {"ram_bytes", row.ram_bytes},
                         {"bytes_per_cached_token", row.bytes_per_token},
                         {"conversations_per_gib", row.conversations_per_gib},
                         {"restore_ttft_s", row.restore_ttft_s}});
  }
  Json compute = Json::array();
  for (const char* dtype : {"f16", "q8_0", "q4_0"}) {
    std::fprintf(stderr, "bench footprint: cold prefill with --kv-cache-dtype %s...\n", dtype);
    KV_ASSIGN_OR_RETURN(const double ttft, ColdTtft(o, dtype));
    compute.push_back({{"kv_cache_dtype", dtype}, {"cold_ttft_s", ttft}});
  }
  const double f16_ram = NumberOr(encodings[0], "ram_bytes", 0);
  const double f16_per_token = NumberOr(encodings[0], "bytes_per_cached_token", 0);
  const double full_copies = f16_per_token * o.conversations * (o.system_tokens + o.own_tokens);
  Json report = {{"model", o.model_path},
                 {"conversations", o.conversations},
                 {"system_tokens", o.system_tokens},
                 {"own_tokens", o.own_tokens},
                 {"encodings", encodings},
                 {"compute_cache_types", compute},
                 {"kvault_f16_ram_bytes", f16_ram},
                 {"full_copies_bytes", full_copies},
                 {"sharing_saves", 1 - Ratio(f16_ram, full_copies)}};
  if (!o.skip_llama_server) {
    std::fprintf(stderr, "bench footprint: llama-server...\n");
    KV_ASSIGN_OR_RETURN(const LlamaServerFootprint server, MeasureLlamaServer(o));
    report["llama_server_cache_bytes"] = server.cache_mib * (1 << 20);
    report["llama_server_cache_prompts"] = server.cache_prompts;
    report["llama_server_revisit_ttft_s"] = server.revisit_ttft_s;
  }
  return report;
}

void PrintTable(const Json& report) {
  const int conversations = report["conversations"].get<int>();
  std::printf("model %s: %d conversations = %d shared + %d own tokens each\n",
              report["model"].get_ref<const std::string&>().c_str(), conversations,
              report["system_tokens"].get<int>(), report["own_tokens"].get<int>());
  std::printf("kvault RAM (f16): %.1f MiB; %d full copies would be %.1f MiB",
              NumberOr(report, "kvault_f16_ram_bytes", 0) / (1 << 20), conversations,
              NumberOr(report, "full_copies_bytes", 0) / (1 << 20));
  if (report.contains("llama_server_cache_bytes")) {
    std::printf(
        "\nllama-server: prompt cache %.1f MiB (%d prompts); conversation 0 again: "
        "TTFT %.3f s",
        NumberOr(report, "llama_server_cache_bytes", 0) / (1 << 20),
        report["llama_server_cache_prompts"].get<int>(),
        NumberOr(report, "llama_server_revisit_ttft_s", 0));
  }
  std::printf("\n%-10s %14s %12s %16s %14s\n", "at rest", "RAM MiB", "B/token", "convs per GiB",
              "revisit TTFT s");
  for (const Json& r : report["encodings"]) {
    std::printf("%-10s %14.1f %12.1f %16.1f %14.3f\n", r["encoding"].get<std::string>().c_str(),
                NumberOr(r, "ram_bytes", 0) / (1 << 20), NumberOr(r, "bytes_per_cached_token", 0),
                NumberOr(r, "conversations_per_gib", 0), NumberOr(r, "restore_ttft_s", 0));
  }
  std::printf("%-14s %14s\n", "compute cache", "cold TTFT s");
  for (const Json& r : report["compute_cache_types"]) {
    std::printf("%-14s %14.3f\n", r["kv_cache_dtype"].get<std::string>().c_str(),
                NumberOr(r, "cold_ttft_s", 0));
  }
}

}  // namespace

int RunBenchFootprint(int argc, char** argv) {
  CLI::App app("Memory of cached KV: sharing, encodings at rest, and quantized compute caches.",
               "bench footprint");
  FootprintOptions o;
  AddModelOption(app, o);
  AddBoundedOption(app, "--conversations", o.conversations, "conversations", 1, 256);
  AddBoundedOption(app, "--system-tokens", o.system_tokens, "shared system prompt tokens (about)",
                   16, 1 << 16);
  AddBoundedOption(app, "--own-tokens", o.own_tokens, "tokens of each conversation's own (about)",
                   16, 1 << 16);
  app.add_option("--encodings", o.encodings, "at-rest encodings, comma-separated (f16 first)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "q8", "q4", "f16+zstd", "q8+zstd", "q4+zstd"}));
  app.add_flag("--skip-llama-server", o.skip_llama_server, "do not run llama-server");
  AddThreadsOption(app, o);
  return RunDriver(
      app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
}

}  // namespace kvault::cli
