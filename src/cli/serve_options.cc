#include "cli/serve_options.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <thread>

#include "cli/paths.h"

#include "kvault/base/file.h"
#include "kvault/base/json.h"
#include "kvault/base/status_macros.h"
#include "kvault/server/auth.h"

namespace kvault::cli {
namespace {

// --recall-min-score when --embedding-model is given and the threshold is not.
constexpr double kFusedRecallMinScore = 0.02;

std::string EnvName(const std::string& flag) {
  std::string name = "KVAULT_";
  for (char c : flag) name += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return name;
}

std::string DefaultConfigPath() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  const char* home = std::getenv("HOME");
  if (xdg != nullptr && *xdg != '\0') return std::string(xdg) + "/kvault/config.json";
  if (home != nullptr) return std::string(home) + "/.config/kvault/config.json";
  return "";
}

// A JSON value as the text a flag would have carried.
Result<std::string> FlagText(const Json& value, const std::string& key) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return std::string(value.get<bool>() ? "true" : "false");
  if (value.is_number()) return DumpJson(value);
  if (value.is_array()) {
    std::string joined;
    for (const Json& item : value) {
      if (!item.is_string()) return InvalidArgumentError("config key '" + key + "': strings only");
      joined += (joined.empty() ? "" : ",") + item.get<std::string>();
    }
    return joined;
  }
  return InvalidArgumentError("config key '" + key + "' has an unsupported value");
}

// CLI::Range lets "nan" through (every comparison with NaN is false), and a NaN setting
// would reach casts and deadlines as undefined behaviour (found by fuzz/config_fuzz.cc).
CLI::Validator NotNan() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        double value = 0;
        if (CLI::detail::lexical_cast(input, value) && std::isnan(value))
          return "NaN is not allowed";
        return "";
      },
      "");
}

// Applies config text (JSON; `source` names it in messages) to every option neither a flag
// nor the environment has set.
Status ApplyConfigText(CLI::App& app, std::string_view text, const std::string& source) {
  KV_ASSIGN_OR_RETURN(Json config, ParseJson(text));
  if (!config.is_object()) return InvalidArgumentError(source + " is not an object");
  for (auto it = config.begin(); it != config.end(); ++it) {
    std::string flag = it.key();
    for (char& c : flag) c = c == '_' ? '-' : c;
    CLI::Option* option = app.get_option_no_throw("--" + flag);
    if (option == nullptr || flag == "config") {
      return InvalidArgumentError(source + ": unknown key '" + it.key() + "'");
    }
    if (option->count() > 0 || std::getenv(EnvName(flag).c_str()) != nullptr) continue;
    KV_ASSIGN_OR_RETURN(std::string value, FlagText(it.value(), it.key()));
    try {  // CLI11 reports a bad value by throwing
      option->add_result(value);
      option->run_callback();
    } catch (const CLI::Error& error) {
      return InvalidArgumentError(source + ", key '" + it.key() + "': " + error.what());
    }
  }
  return Status::Ok();
}

}  // namespace

ServeOptions::ServeOptions() : app_("Serve a model over an OpenAI-compatible HTTP API.", "serve") {
  server::ServerConfig& c = config_;
  auto add = [this](const std::string& flag, auto& variable, const std::string& help) {
    return app_.add_option("--" + flag, variable, help)
        ->envname(EnvName(flag))
        ->capture_default_str();
  };
  add("model", c.model_path, "GGUF model file");
  add("host", c.host, "address to listen on");
  add("port", c.port, "port to listen on (0 = any free port)")->check(CLI::Range(0, 65535));
  add("window", c.window, "tokens the model sees per inference")->check(CLI::Range(64, 1 << 20));
  add("cache-size", c.cache_size, "tokens each conversation remembers (max_model_len)")
      ->check(CLI::Range(int64_t{64}, int64_t{1} << 40));
  app_.add_option("--kessie-cache-size", c.cache_size, "alias of --cache-size")
      ->envname("KVAULT_KESSIE_CACHE_SIZE")
      ->check(CLI::Range(int64_t{64}, int64_t{1} << 40));
  add("max-generation", c.max_generation, "most tokens one reply may have")
      ->check(CLI::Range(1, 1 << 20));
  add("max-model-len", c.max_model_len, "KV cells per sequence; 0 = auto (the window)")
      ->check(CLI::Range(0, 1 << 22));
  add("kv-cache-dtype", c.kv_cache_dtype, "KV cache type while computing")
      ->check(CLI::IsMember({"f16", "q8_0", "q4_0"}));
  app_.add_flag("--kv-unified", c.kv_unified,
                "one KV cell pool for all sequences: shared prefixes occupy cells once, but "
                "attention spans every sequence's cells (slower prefill with many parked)")
      ->envname("KVAULT_KV_UNIFIED");
  add("threads", c.threads, "CPU threads for llama.cpp; 0 = all cores")->check(CLI::Range(0, 1024));
  add("gpus", c.gpus, "GPUs: > 0 offloads all layers, split across that many")
      ->check(CLI::Range(0, 64));
  add("conversation-threads", c.conversation_threads, "conversations generating at once")
      ->check(CLI::Range(1, 256));
  add("conversation-queue", c.conversation_queue, "requests that may wait; beyond: 503")
      ->check(CLI::Range(0, 100000));
  add("fog-alpha", c.fog_alpha, "recency demotion of old context in recall; 0 = off")
      ->check(CLI::Range(0.0, 100.0))
      ->check(NotNan());
  add("recall-budget", c.recall_budget,
      "tokens of recalled history per prompt (clamped to window/4); 0 = no recall")
      ->check(CLI::Range(0, 1 << 20));
  add("recall-min-score", c.recall_min_score,
      "relevance a chunk needs to be recalled, after fog demotion: BM25 score, or with "
      "--embedding-model the fused score (at most 2/61; default then 0.02)")
      ->check(CLI::Range(0.0, 1e9))
      ->check(NotNan());
  add("max-recalls", c.max_recalls, "mid-generation recalls per response; 0 = off")
      ->check(CLI::Range(0, 16));
  add("embedding-model", c.embedding_model,
      "GGUF embedding model: recall also searches chunk embeddings, fused with BM25 "
      "(default: BM25 only)");
  app_.add_option("--hedge-phrases", c.hedge_phrases,
                  "phrases that trigger mid-generation recall, comma-separated (default: an "
                  "English list such as \"if I recall\", \"I don't remember\")")
      ->envname("KVAULT_HEDGE_PHRASES")
      ->delimiter(',');
  app_.add_option("--api-key", api_keys_,
                  "API key(s), comma-separated; then every route but "
                  "/health needs 'Authorization: Bearer <key>'")
      ->envname("KVAULT_API_KEY");
  add("log-format", c.log_format, "log lines as text or json")
      ->check(CLI::IsMember({"text", "json"}));
  add("log-level", c.log_level, "debug, info, warning or error")
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  add("max-connections", c.max_connections,
      "open connections served at once (idle and slow ones included); beyond them and 64 "
      "waiting, new connections are closed at once")
      ->check(CLI::Range(16, 65536));
  add("header-timeout", c.header_timeout_seconds,
      "seconds a request head may take from its first byte (slower: 408)")
      ->check(CLI::Range(0.1, 3600.0));
  add("body-timeout", c.body_timeout_seconds,
      "seconds a request body may take after its head (slower: 408)")
      ->check(CLI::Range(0.1, 86400.0));
  add("max-body-mb", max_body_mb_, "largest request body accepted (larger: 413)")
      ->check(CLI::Range(1, 4096));
  add("prefill-chunk", c.prefill_chunk, "prompt tokens per step while others generate")
      ->check(CLI::Range(1, 1 << 16));
  add("cache-dir", c.cache_dir,
      "folder of the disk tier of KV blocks (default ~/.cache/kvault/blocks)");
  add("data-dir", c.data_dir,
      "folder of conversation journals and sessions (default ~/.local/share/kvault)");
  add("cache-ram-mb", c.cache_ram_mb, "RAM budget of the KV block tier, MiB")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  add("cache-disk-gb", c.cache_disk_gb, "disk budget of the KV block tier, GiB; 0 = no disk tier")
      ->check(CLI::Range(0.0, 1e6))
      ->check(NotNan());
  add("cache-ttl", c.cache_ttl_s,
      "seconds a KV block may go unused before it leaves every tier (pinned ones stay); "
      "0 = never (zKV's prompt_cache_ttl)")
      ->check(CLI::Range(0.0, 1e9))
      ->check(NotNan());
  add("block-size", c.block_size, "tokens per KV block")->check(CLI::Range(16, 1 << 16));
  add("cache-encoding", c.cache_encoding,
      "KV blocks at rest: f16 (lossless), q8 or q4, optionally +zstd (e.g. q8+zstd)")
      ->check(CLI::IsMember({"f16", "q8", "q4", "f16+zstd", "q8+zstd", "q4+zstd"}));
  add("eviction", c.eviction, "eviction policy of the tiers: lru, lfu or cost")
      ->check(CLI::IsMember({"lru", "lfu", "cost"}));
  add("restore", c.restore,
      "prefix reuse: auto (restore when faster than prefill), always, or never (no caching)")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  app_.add_flag("--shared-cache", c.shared_cache,
                "with --api-key: let keys reuse each other's cached prefixes (faster, but a key "
                "can then tell from reply times what another key sent); off: each key reuses "
                "only its own KV and the --preload prefixes")
      ->envname("KVAULT_SHARED_CACHE");
  add("preload", c.preload_path,
      "JSON file: an array of prompts or {\"messages\": [...]} whose KV is computed at "
      "start-up and pinned");
  add("shutdown-grace", c.shutdown_grace_seconds,
      "seconds running requests get to finish on SIGINT/SIGTERM")
      ->check(CLI::Range(0.0, 3600.0))
      ->check(NotNan());
  app_.add_option("--config", config_path_,
                  "JSON config file; keys are flag names (default "
                  "~/.config/kvault/config.json when present). Flags win over KVAULT_* "
                  "environment variables, which win over the file");
}

void ServeOptions::ResetValues() {
  config_ = server::ServerConfig{};
  api_keys_.clear();
  config_path_.clear();
  max_body_mb_ = kDefaultMaxBodyMb;
}

std::optional<int> ServeOptions::Parse(int argc, char** argv) {
  ResetValues();
  if (auto exit_code = ParseArgs(app_, argc, argv)) return exit_code;
  const bool explicit_config = !config_path_.empty();
  const std::string path = explicit_config ? config_path_ : DefaultConfigPath();
  if (path.empty() || (!explicit_config && !PathExists(path))) return Finish(Status::Ok());
  Result<std::string> text = ReadFileToString(path);
  return Finish(text.ok() ? ApplyConfigText(app_, *text, "config file " + path) : text.status());
}

std::optional<int> ServeOptions::ParseWithConfigText(int argc, char** argv,
                                                     std::string_view config_text) {
  ResetValues();
  if (auto exit_code = ParseArgs(app_, argc, argv)) return exit_code;
  return Finish(ApplyConfigText(app_, config_text, "config text"));
}

std::optional<int> ServeOptions::Finish(const Status& config_applied) {
  if (!config_applied.ok()) return ReportError(config_applied);
  // Fused scores are sums of 1 / (60 + rank) (memory/chunk_index.h), so the BM25 default
  // would recall nothing. 0.02: ranked in the top 40 of both rankings, or near the top of
  // one and listed in the other.
  const CLI::Option* min_score = app_.get_option_no_throw("--recall-min-score");
  if (!config_.embedding_model.empty() && min_score != nullptr && min_score->count() == 0) {
    config_.recall_min_score = kFusedRecallMinScore;
  }
  config_.max_body_bytes = static_cast<int64_t>(max_body_mb_) << 20;
  config_.api_keys = server::SplitKeys(api_keys_);
  if (config_.cache_dir.empty()) config_.cache_dir = DefaultCacheDir() + "/blocks";
  if (config_.data_dir.empty()) config_.data_dir = DefaultDataDir();
  return std::nullopt;
}

}  // namespace kvault::cli
