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
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include "cli/bench_client.h"
#include "cli/bench_common.h"
#include "cli/child_process.h"
#include "cli/cli_util.h"
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

struct FootprintOptions {
  std::string model_path;
  int conversations = 8;
  int system_tokens = 1000;
  int own_tokens = 1000;
  std::vector<std::string> encodings = {"f16", "q8", "q4", "q8+zstd"};
  int threads = 0;
  bool skip_llama_server = false;
  bool json = false;
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

class Server {
 public:
  static Result<std::unique_ptr<Server>> Start(const FootprintOptions& o, bool kvault,
                                               std::vector<std::string> extra) {
    auto server = std::unique_ptr<Server>(new Server);
    server->dir_ = (std::filesystem::temp_directory_path() /
                    ("kvault-bench-footprint-" + std::to_string(::getpid())))
                       .string();
    std::filesystem::remove_all(server->dir_);
    KV_ASSIGN_OR_RETURN(int port, FreePort());
    std::vector<std::string> argv;
    const int window = o.system_tokens + o.own_tokens + 512;
    if (kvault) {
      argv = {SelfPath(),
              "serve",
              "--model",
              o.model_path,
              "--port",
              std::to_string(port),
              "--window",
              std::to_string(window),
              "--threads",
              std::to_string(o.threads),
              "--conversation-threads",
              "1",
              "--cache-disk-gb",
              "0",
              "--log-level",
              "warning",
              "--cache-dir",
              server->dir_ + "/blocks",
              "--data-dir",
              server->dir_ + "/data"};
    } else {
      argv = {LlamaToolPath("llama-server"),
              "-m",
              o.model_path,
              "--port",
              std::to_string(port),
              "-np",
              "1",
              "-c",
              std::to_string(window),
              "-t",
              std::to_string(o.threads),
              "--no-webui",
              "-v"};
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    KV_ASSIGN_OR_RETURN(server->child_, ChildServer::Start(argv, port, server->dir_ + ".log", 600));
    return server;
  }
  ~Server() {
    child_.reset();
    std::filesystem::remove_all(dir_);
    if (!std::getenv("KVAULT_BENCH_KEEP_LOGS")) std::filesystem::remove(dir_ + ".log");
  }
  int port() const { return child_->port(); }
  std::string log() const {
    std::ifstream in(dir_ + ".log");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  Result<Json> Get(const std::string& path) const {
    httplib::Client client("127.0.0.1", port());
    httplib::Result result = client.Get(path);
    if (!result || result->status != 200) return InternalError("GET " + path + " failed");
    return ParseJson(result->body);
  }
  Result<StreamTiming> Chat(const Json& body) const {
    StreamTiming timing = StreamChat(port(), body, BenchClock::now());
    if (!timing.ok) return InternalError("request failed: " + timing.error);
    return timing;
  }

 private:
  Server() = default;
  std::string dir_;
  std::unique_ptr<ChildServer> child_;
};

struct EncodingRow {
  std::string encoding;
  double ram_bytes = 0;
  double cached_tokens = 0;  // distinct tokens cached
  double bytes_per_token = 0;
  double conversations_per_gib = 0;
  double restore_ttft_s = 0;  // conversation 0 again (the same request), from RAM
};

Result<EncodingRow> MeasureEncoding(const FootprintOptions& o, const std::string& encoding) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<Server> server,
                      Server::Start(o, true, {"--cache-encoding", encoding}));
  for (int i = 0; i < o.conversations; ++i) {
    KV_RETURN_IF_ERROR(server->Chat(Body(o, i, true)).status());
  }
  KV_ASSIGN_OR_RETURN(Json stats, server->Get("/v1/cache/stats"));
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
  KV_ASSIGN_OR_RETURN(std::unique_ptr<Server> server,
                      Server::Start(o, true, {"--kv-cache-dtype", dtype, "--restore", "never"}));
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
  KV_ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Server::Start(o, false, {}));
  for (int i = 0; i < o.conversations; ++i) {
    KV_RETURN_IF_ERROR(server->Chat(Body(o, i, false)).status());
  }
  LlamaServerFootprint footprint;
  KV_ASSIGN_OR_RETURN(StreamTiming revisit, server->Chat(Body(o, 0, false)));
  footprint.revisit_ttft_s = revisit.first_token_s;
  const std::string log = server->log();
  const std::regex state("cache state: ([0-9]+) prompts, ([0-9.]+) MiB");
  footprint.cache_mib = -1;
  for (std::sregex_iterator it(log.begin(), log.end(), state), end; it != end; ++it) {
    footprint.cache_prompts = std::stoi((*it)[1]);
    footprint.cache_mib = std::stod((*it)[2]);
  }
  if (footprint.cache_mib < 0) return InternalError("no 'cache state' line in llama-server's log");
  return footprint;
}

int RunFootprint(FootprintOptions o) {
  if (o.threads == 0) o.threads = DefaultThreadCount();
  Json encodings = Json::array();
  for (const std::string& encoding : o.encodings) {
    std::fprintf(stderr, "bench footprint: kvault --cache-encoding %s...\n", encoding.c_str());
    Result<EncodingRow> row = MeasureEncoding(o, encoding);
    if (!row.ok()) return ReportError(row.status());
    encodings.push_back({{"encoding", row->encoding},
                         {"ram_bytes", row->ram_bytes},
                         {"bytes_per_cached_token", row->bytes_per_token},
                         {"conversations_per_gib", row->conversations_per_gib},
                         {"restore_ttft_s", row->restore_ttft_s}});
  }
  Json compute = Json::array();
  for (const char* dtype : {"f16", "q8_0", "q4_0"}) {
    std::fprintf(stderr, "bench footprint: cold prefill with --kv-cache-dtype %s...\n", dtype);
    Result<double> ttft = ColdTtft(o, dtype);
    if (!ttft.ok()) return ReportError(ttft.status());
    compute.push_back({{"kv_cache_dtype", dtype}, {"cold_ttft_s", *ttft}});
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
    Result<LlamaServerFootprint> server = MeasureLlamaServer(o);
    if (!server.ok()) return ReportError(server.status());
    report["llama_server_cache_bytes"] = server->cache_mib * (1 << 20);
    report["llama_server_cache_prompts"] = server->cache_prompts;
    report["llama_server_revisit_ttft_s"] = server->revisit_ttft_s;
  }
  if (o.json) {
    std::printf("%s\n", DumpJson(report, 2).c_str());
    return 0;
  }
  std::printf("model %s: %d conversations = %d shared + %d own tokens each\n", o.model_path.c_str(),
              o.conversations, o.system_tokens, o.own_tokens);
  std::printf("kvault RAM (f16): %.1f MiB; %d full copies would be %.1f MiB", f16_ram / (1 << 20),
              o.conversations, full_copies / (1 << 20));
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
  for (const Json& r : encodings) {
    std::printf("%-10s %14.1f %12.1f %16.1f %14.3f\n", r["encoding"].get<std::string>().c_str(),
                NumberOr(r, "ram_bytes", 0) / (1 << 20), NumberOr(r, "bytes_per_cached_token", 0),
                NumberOr(r, "conversations_per_gib", 0), NumberOr(r, "restore_ttft_s", 0));
  }
  std::printf("%-14s %14s\n", "compute cache", "cold TTFT s");
  for (const Json& r : compute) {
    std::printf("%-14s %14.3f\n", r["kv_cache_dtype"].get<std::string>().c_str(),
                NumberOr(r, "cold_ttft_s", 0));
  }
  return 0;
}

}  // namespace

int RunBenchFootprint(int argc, char** argv) {
  CLI::App app("Memory of cached KV: sharing, encodings at rest, and quantized compute caches.",
               "bench footprint");
  FootprintOptions o;
  app.add_option("-m,--model", o.model_path, "GGUF model file")->required();
  app.add_option("--conversations", o.conversations, "conversations")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--system-tokens", o.system_tokens, "shared system prompt tokens (about)")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 16));
  app.add_option("--own-tokens", o.own_tokens, "tokens of each conversation's own (about)")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 16));
  app.add_option("--encodings", o.encodings, "at-rest encodings, comma-separated (f16 first)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"f16", "q8", "q4", "f16+zstd", "q8+zstd", "q4+zstd"}));
  app.add_flag("--skip-llama-server", o.skip_llama_server, "do not run llama-server");
  app.add_option("-t,--threads", o.threads, "CPU threads; 0 = all cores")->capture_default_str();
  app.add_flag("--json", o.json, "print the report as JSON");
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;
  if (o.encodings.empty() || o.encodings[0] != "f16") {
    return ReportError(InvalidArgumentError("--encodings must start with f16 (the reference)"));
  }
  return RunFootprint(o);
}

}  // namespace kvault::cli
