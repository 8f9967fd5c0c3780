#include "cli/serve_options.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "cli/config_sections.h"
#include "cli/paths.h"
#include <ggml-backend.h>
#include <ggml.h>
#include <gguf.h>

#include "kvault/base/file.h"
#include "kvault/base/json.h"
#include "kvault/base/status_macros.h"
#include "kvault/engine/llama_runtime.h"
#include "kvault/server/auth.h"
#include "kvault/upstream/upstream_client.h"

namespace kvault::cli {
namespace {

// --recall-min-score when --embedding-model is given and the threshold is not.
constexpr double kFusedRecallMinScore = 0.02;

std::string EnvName(const std::string& flag) {
  std::string name = "KVAULT_";
  for (char c : flag) name += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return name;
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
  KV_ASSIGN_OR_RETURN(Json config, ParseConfigText(text, source));  // KV3D's sections too
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

// <prefix>/etc/kvault/config.json for a binary installed as <prefix>/bin/kvault
// (scripts/install.sh writes it); "" when the binary's path is unknown.
std::string InstalledConfigPath() {
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "";
  return (exe.parent_path().parent_path() / "etc" / "kvault" / "config.json").string();
}

// --- Other tools' names ------------------------------------------------------------------

// A validator that may rewrite its input (an alias to kvault's name) or refuse it with a
// reason: `check` returns the error, "" to accept.
CLI::Validator Names(std::string description, std::function<std::string(std::string&)> check) {
  return CLI::Validator(std::move(check), std::move(description));
}

// --kv-cache-dtype: llama.cpp's cache types, and vLLM's names where they mean one of them.
std::string CheckKvCacheDtype(std::string& input) {
  if (input == "auto" || input == "float16" || input == "fp16" || input == "half") input = "f16";
  if (input == "f16" || input == "q8_0" || input == "q4_0") return "";
  if (input.starts_with("fp8")) {
    return input +
           ": llama.cpp has no fp8 KV cache; the nearest are q8_0 (8 bits per value, "
           "the same size as fp8) and f16";
  }
  if (input == "bfloat16" || input == "bf16") return input + ": not offered; f16 has its size";
  return input + ": not a KV cache type (f16, q8_0, q4_0; auto and float16 mean f16)";
}

// --backend: kvault runs GGUF models through llama.cpp; other engines are refused.
std::string CheckBackend(std::string& input) {
  if (input == "llama.cpp" || input == "llamacpp" || input == "llama_cpp") {
    input = "llama.cpp";
    return "";
  }
  if (input == "upstream") return "";  // needs --upstream URL (checked in Finish)
  return input +
         ": kvault runs GGUF models through llama.cpp (--backend llama.cpp, the default) or "
         "forwards to another server (--backend upstream --upstream URL)";
}

// --dtype (the weights' type) as f16, bf16 or f32; "" for auto; nullopt for no dtype. Whether
// the model file holds that type is checked in ApplyModelSizing.
std::optional<std::string> NormalDtype(const std::string& input) {
  if (input == "auto" || input.empty()) return "";
  if (input == "float16" || input == "fp16" || input == "half" || input == "f16") return "f16";
  if (input == "bfloat16" || input == "bf16") return "bf16";
  if (input == "float32" || input == "fp32" || input == "float" || input == "f32") return "f32";
  return std::nullopt;
}
std::string CheckDtype(std::string& input) {
  return NormalDtype(input) ? ""
                            : input + ": not a weight dtype (auto, float16, bfloat16, float32)";
}

// "4GB", "512MiB", "2g", "1048576": bytes. K, M, G and T, with or without B or iB, are all
// powers of 1024 (as zKV's and most tools' "GB" of memory are).
Result<uint64_t> ParseBytes(const std::string& text) {
  size_t end = 0;
  while (end < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.')) {
    ++end;
  }
  std::string unit = text.substr(end);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.ends_with("IB")) unit.erase(unit.size() - 2);
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  static constexpr std::string_view kUnits = "BKMGT";
  const size_t power = unit.empty() ? 0 : kUnits.find(unit);
  double value = 0;
  if (end == 0 || power == std::string_view::npos || unit.size() > 1 ||
      !CLI::detail::lexical_cast(text.substr(0, end), value) || value <= 0 || value > 1e15) {
    return InvalidArgumentError("'" + text + "' is not a memory size (e.g. 4GB, 512MB)");
  }
  return static_cast<uint64_t>(value * std::pow(1024.0, static_cast<double>(power)));
}

// --- Settings sized by the model's GGUF header -------------------------------------------

struct GgufCloser {
  void operator()(gguf_context* ctx) const { gguf_free(ctx); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufCloser>;

// An integer metadata value (any integer type); nullopt when absent or of another type.
std::optional<int64_t> GgufInt(const gguf_context* ctx, const std::string& key) {
  const int64_t id = gguf_find_key(ctx, key.c_str());
  if (id < 0) return std::nullopt;
  switch (gguf_get_kv_type(ctx, id)) {
    case GGUF_TYPE_UINT8: return gguf_get_val_u8(ctx, id);
    case GGUF_TYPE_INT8: return gguf_get_val_i8(ctx, id);
    case GGUF_TYPE_UINT16: return gguf_get_val_u16(ctx, id);
    case GGUF_TYPE_INT16: return gguf_get_val_i16(ctx, id);
    case GGUF_TYPE_UINT32: return gguf_get_val_u32(ctx, id);
    case GGUF_TYPE_INT32: return gguf_get_val_i32(ctx, id);
    case GGUF_TYPE_UINT64: return static_cast<int64_t>(gguf_get_val_u64(ctx, id));
    case GGUF_TYPE_INT64: return gguf_get_val_i64(ctx, id);
    default: return std::nullopt;
  }
}

// What the model-sized flags need to know of a GGUF file.
struct ModelFacts {
  int64_t file_type = -1;  // general.file_type (llama_ftype); -1 when absent
  int64_t n_ctx_train = 0;
  uint64_t file_bytes = 0;
  // Per layer: the K and the V values one token adds to the cache.
  std::vector<std::pair<int64_t, int64_t>> kv_values;
};

// Reads the header only (gguf no_alloc: no tensor data). WART: assumes every layer caches K
// and V for every token (sliding-window and recurrent layers cache less, so the derived
// window is then smaller than what would fit).
Result<ModelFacts> ReadModelFacts(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  char magic[4] = {};
  if (!file.read(magic, 4)) return NotFoundError("model: cannot read " + path);
  // Checked here: gguf would log its own complaint on top of ours.
  if (std::string_view(magic, 4) != "GGUF")
    return InvalidArgumentError(path + " is not a GGUF file");
  GgufPtr ctx(gguf_init_from_file(path.c_str(), {.no_alloc = true, .ctx = nullptr}));
  if (ctx == nullptr) return InvalidArgumentError("model: cannot parse the GGUF header of " + path);
  const int64_t arch_id = gguf_find_key(ctx.get(), "general.architecture");
  const std::string arch = arch_id >= 0 ? gguf_get_val_str(ctx.get(), arch_id) : "";
  ModelFacts facts;
  facts.file_type = GgufInt(ctx.get(), "general.file_type").value_or(-1);
  facts.n_ctx_train = GgufInt(ctx.get(), arch + ".context_length").value_or(0);
  std::error_code error;
  facts.file_bytes = std::filesystem::file_size(path, error);
  const int64_t n_layer = GgufInt(ctx.get(), arch + ".block_count").value_or(0);
  const int64_t n_embd = GgufInt(ctx.get(), arch + ".embedding_length").value_or(0);
  const int64_t n_head = GgufInt(ctx.get(), arch + ".attention.head_count").value_or(0);
  if (n_layer <= 0 || n_embd <= 0 || n_head <= 0) {
    return InvalidArgumentError("model: " + path + " gives no attention shape for '" + arch + "'");
  }
  const int64_t k_len =
      GgufInt(ctx.get(), arch + ".attention.key_length").value_or(n_embd / n_head);
  const int64_t v_len = GgufInt(ctx.get(), arch + ".attention.value_length").value_or(k_len);
  const std::string kv_key = arch + ".attention.head_count_kv";
  const int64_t kv_id = gguf_find_key(ctx.get(), kv_key.c_str());
  std::vector<int64_t> n_head_kv(static_cast<size_t>(n_layer),
                                 GgufInt(ctx.get(), kv_key).value_or(n_head));
  if (kv_id >= 0 && gguf_get_kv_type(ctx.get(), kv_id) == GGUF_TYPE_ARRAY &&
      gguf_get_arr_n(ctx.get(), kv_id) == static_cast<size_t>(n_layer)) {
    const gguf_type type = gguf_get_arr_type(ctx.get(), kv_id);
    const void* data = gguf_get_arr_data(ctx.get(), kv_id);
    for (int64_t l = 0; l < n_layer; ++l) {
      if (type == GGUF_TYPE_INT32 || type == GGUF_TYPE_UINT32) {
        n_head_kv[l] = static_cast<const int32_t*>(data)[l];  // per layer (0: no attention)
      }
    }
  }
  for (int64_t heads : n_head_kv) facts.kv_values.emplace_back(heads * k_len, heads * v_len);
  return facts;
}

// Bytes of KV one token takes in the compute cache of `cache_dtype` (f16, q8_0, q4_0).
Result<uint64_t> KvBytesPerToken(const ModelFacts& facts, const std::string& cache_dtype) {
  const ggml_type type = cache_dtype == "q8_0"   ? GGML_TYPE_Q8_0
                         : cache_dtype == "q4_0" ? GGML_TYPE_Q4_0
                                                 : GGML_TYPE_F16;
  uint64_t bytes = 0;
  for (const auto& [k, v] : facts.kv_values) {
    if (k % ggml_blck_size(type) != 0 || v % ggml_blck_size(type) != 0) {
      return InvalidArgumentError("kv: this model's K/V rows (" + std::to_string(k) +
                                  " values) do not divide into " + cache_dtype + " blocks");
    }
    bytes += ggml_row_size(type, k) + ggml_row_size(type, v);
  }
  if (bytes == 0) return InvalidArgumentError("kv: this model caches no K/V");
  return bytes;
}

// --dtype against the types the file holds (llama.cpp computes in those; it converts none).
Status CheckModelDtype(const std::string& typed, const ModelFacts& facts) {
  const std::string dtype = NormalDtype(typed).value_or(typed);
  // llama_ftype values (llama.h) of the three plain types, and of common quantisations.
  static const std::vector<std::pair<int64_t, std::string>> kFileTypes = {
      {0, "f32"},     {1, "f16"},     {32, "bf16"},   {2, "Q4_0"},    {7, "Q8_0"},
      {8, "Q5_0"},    {10, "Q2_K"},   {12, "Q3_K_M"}, {14, "Q4_K_S"}, {15, "Q4_K_M"},
      {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"}};
  std::string held = "file type " + std::to_string(facts.file_type);
  for (const auto& [value, name] : kFileTypes) {
    if (value == facts.file_type) held = name;
  }
  if (held == dtype) return Status::Ok();
  return InvalidArgumentError("--dtype " + typed +
                              ": llama.cpp runs the weights in the GGUF file's own types, here " +
                              held + "; convert the model, or leave --dtype out (auto)");
}

// Device memory of the first `gpus` GPUs llama.cpp sees, in bytes.
Result<uint64_t> GpuMemoryBytes(int gpus) {
  engine::InitLlamaRuntime();
  if (!engine::LlamaSupportsGpuOffload()) {
    return InvalidArgumentError(
        "--gpu-memory-utilization: this kvault has no GPU backend (rebuild with KVAULT_CUDA=1); "
        "size the KV cache with --kv-cache-memory");
  }
  uint64_t total = 0;
  int found = 0;
  for (size_t i = 0; i < ggml_backend_dev_count() && found < gpus; ++i) {
    ggml_backend_dev_t device = ggml_backend_dev_get(i);
    if (ggml_backend_dev_type(device) != GGML_BACKEND_DEVICE_TYPE_GPU) continue;
    size_t free_bytes = 0, device_bytes = 0;
    ggml_backend_dev_memory(device, &free_bytes, &device_bytes);
    total += device_bytes;
    ++found;
  }
  if (found == 0) return UnavailableError("--gpu-memory-utilization: llama.cpp finds no GPU");
  return total;
}

// Device KV sized by a memory budget. Each conversation thread holds two sequences (a running
// and a parked one: conversation/stack.cc), each of the window's cells (or --max-model-len's),
// and so does each of --pinned-sequences.
struct KvFitParams {
  std::string budget_name;  // "--kv-cache-memory 4GB", for messages
  uint64_t budget_bytes = 0;
  uint64_t bytes_per_token = 0;  // > 0
  int window = 0;                // explicit when window_given
  bool window_given = false;
  int threads = 0;  // explicit when threads_given, else the default
  bool threads_given = false;
  int pinned = 0;          // --pinned-sequences: sequences beyond the threads' two each
  int max_model_len = 0;   // > 0: cells per sequence, whatever the window
  int64_t window_cap = 0;  // the largest window worth deriving (training context, cache size)
};
struct KvFit {
  int window = 0;
  int threads = 0;
};

// With the cells per sequence fixed (--window or --max-model-len given), the threads that
// fit (unless given too: then whether they fit); otherwise the window that fits the threads.
Result<KvFit> FitKvBudget(const KvFitParams& p) {
  constexpr int64_t kMinWindow = 64;  // --window's lower bound
  constexpr int64_t kMaxThreads = 256;
  const int64_t tokens = static_cast<int64_t>(p.budget_bytes / p.bytes_per_token);
  const std::string holds = p.budget_name + " holds " + std::to_string(tokens) +
                            " tokens of this model's KV (" + std::to_string(p.bytes_per_token) +
                            " bytes each)";
  KvFit fit{p.window, p.threads};
  const int64_t fixed = p.max_model_len > 0 ? p.max_model_len : (p.window_given ? p.window : 0);
  if (fixed > 0) {
    const int64_t fitting = (tokens / fixed - p.pinned) / 2;
    const int64_t wanted = p.threads_given ? p.threads : 1;
    if (fitting < wanted) {
      return InvalidArgumentError(
          holds + "; " + std::to_string(wanted) + " conversation thread(s)" +
          (p.pinned > 0 ? " and " + std::to_string(p.pinned) + " pinned sequences" : "") + " of " +
          std::to_string(fixed) + " tokens (" +
          (p.max_model_len > 0 ? "--max-model-len" : "--window") + ") need " +
          std::to_string(fixed * (2 * wanted + p.pinned)) +
          " (2 sequences per thread): lower them or raise the budget");
    }
    if (!p.threads_given) fit.threads = static_cast<int>(std::min(fitting, kMaxThreads));
    return fit;
  }
  const int64_t window = std::min(tokens / (2 * int64_t{p.threads} + p.pinned), p.window_cap);
  if (window < kMinWindow) {
    return InvalidArgumentError(
        holds + "; " + std::to_string(p.threads) + " conversation thread(s) (2 sequences each)" +
        (p.pinned > 0 ? " and " + std::to_string(p.pinned) + " pinned" : "") + " would get " +
        std::to_string(window) +
        " tokens each, below --window's least (64): "
        "fewer --conversation-threads or a larger budget");
  }
  fit.window = static_cast<int>(window);
  return fit;
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
  app_.add_option("--max-context", c.window, "alias of --window (zKV's name)")
      ->envname("KVAULT_MAX_CONTEXT")
      ->check(CLI::Range(64, 1 << 20));
  add("cache-size", c.cache_size, "tokens each conversation remembers (max_model_len)")
      ->check(CLI::Range(int64_t{64}, int64_t{1} << 40));
  app_.add_option("--kessie-cache-size", c.cache_size, "alias of --cache-size")
      ->envname("KVAULT_KESSIE_CACHE_SIZE")
      ->check(CLI::Range(int64_t{64}, int64_t{1} << 40));
  add("max-generation", c.max_generation, "most tokens one reply may have")
      ->check(CLI::Range(1, 1 << 20));
  add("max-model-len", c.max_model_len, "KV cells per sequence; 0 = auto (the window)")
      ->check(CLI::Range(0, 1 << 22));
  add("kv-cache-dtype", c.kv_cache_dtype,
      "KV cache type while computing: f16 (auto, float16), q8_0 or q4_0 (no fp8 in llama.cpp)")
      ->transform(Names("f16|q8_0|q4_0", CheckKvCacheDtype));
  add("kv-quant", kv_quant_,
      "zKV's name for the compute cache type: int8 = --kv-cache-dtype q8_0, int4 = q4_0 "
      "(smaller, slower prefill: see README)")
      ->check(CLI::IsMember({"int8", "int4"}));
  add("kv-cache-memory", kv_cache_memory_,
      "device KV budget (e.g. 4GB): with --window given, the conversation threads that fit; "
      "otherwise the window that fits the threads (at most the model's training context)")
      ->check(Names("SIZE", [](std::string& input) {
        const Result<uint64_t> bytes = ParseBytes(input);
        return bytes.ok() ? std::string() : bytes.status().message();
      }));
  add("gpu-memory-utilization", gpu_memory_utilization_,
      "with --gpus: the fraction of the GPUs' memory for weights and KV; the KV budget is that "
      "less the model file, sized as --kv-cache-memory (compute buffers not counted)")
      ->check(CLI::Range(0.0, 1.0))
      ->check(NotNan());
  add("backend", backend_,
      "inference engine: llama.cpp (kvault runs the model), or upstream (another server does; "
      "needs --upstream)")
      ->transform(Names("llama.cpp|upstream", CheckBackend));
  add("upstream", c.upstream_url,
      "http://host:port/v1 of an OpenAI-compatible server (llama-server, vLLM, SGLang) that "
      "generates, kvault keeping the conversations, their memory and recall; none = kvault "
      "runs --model itself");
  add("upstream-key", c.upstream_key, "API key sent to the upstream (Authorization: Bearer)");
  add("upstream-model", c.upstream_model,
      "the upstream's model name; default: the first of its /v1/models");
  add("upstream-timeout", c.upstream_timeout_s,
      "seconds the upstream may send nothing while it generates; then 504")
      ->check(CLI::Range(0.001, 86400.0))
      ->check(NotNan());
  add("normalize-rules", c.normalize_rules_path,
      "JSON file of template normalisation rules [{\"pattern\", \"placeholder\", "
      "\"model\"?}] (RE2) applied to message text before tokenization; none = off");
  app_.add_flag("--analytics,!--no-analytics", c.analytics,
                "record every answered request in <data-dir>/analytics.db (GET /v1/analytics)")
      ->envname("KVAULT_ANALYTICS");
  add("analytics-retention-days", c.analytics_retention_days, "days an analytics row is kept")
      ->check(CLI::Range(0.001, 36500.0))
      ->check(NotNan());
  add("analytics-max-rows", c.analytics_max_rows, "analytics rows kept at most (the newest)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  add("tokenizer", c.tokenizer_path,
      "with --upstream: a GGUF of the upstream's model (vocabulary and chat template only are "
      "loaded); default: --model");
  add("dtype", dtype_,
      "weight dtype: auto, or the GGUF file's own float16, bfloat16 or float32 (llama.cpp "
      "converts none)")
      ->check(Names("auto|float16|bfloat16|float32", CheckDtype));
  app_.add_flag("--kv-unified,!--no-kv-unified", c.kv_unified,
                "one KV cell pool for all sequences: shared prefixes occupy cells once, but "
                "attention spans every sequence's cells (slower prefill with many parked); "
                "default: on with --recall-kv reuse or blend (putting recalled KV back needs it), "
                "else off")
      ->envname("KVAULT_KV_UNIFIED");
  add("threads", c.threads, "CPU threads for llama.cpp; 0 = all cores")->check(CLI::Range(0, 1024));
  add("gpus", c.gpus, "GPUs: > 0 offloads all layers, split across that many")
      ->check(CLI::Range(0, 64));
  add("conversation-threads", c.conversation_threads, "conversations generating at once")
      ->check(CLI::Range(1, 256));
  add("conversation-queue", c.conversation_queue, "requests that may wait; beyond: 503")
      ->check(CLI::Range(0, 100000));
  add("queue-timeout", c.queue_timeout_s,
      "seconds a request may wait for a thread and, with --remote-url, for another replica's "
      "turn of its conversation; beyond: 503 (thread) or 409 (conversation busy)")
      ->check(CLI::Range(0.001, 86400.0))
      ->check(NotNan());
  add("pinned-sequences", c.pinned_sequences,
      "device sequences of their own for pinned conversations (pin: true), beyond the threads' "
      "(each holds --window KV cells); 0 = pins take the threads' parked ones")
      ->check(CLI::Range(0, 252));
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
  add("recall-kv", c.recall_kv,
      "recalled chunks as KV: off (prefill their text: exact), reuse (their KV kept from "
      "when they were in the window is shifted into place: much faster, but computed after "
      "other text; bench/RESULTS.md 'Recall KV') or blend (reuse, but prefill the first "
      "--recall-kv-fraction of each chunk)")
      ->check(CLI::IsMember({"off", "reuse", "blend"}));
  add("recall-kv-fraction", c.recall_kv_fraction,
      "with --recall-kv blend: share of each recalled chunk, from its start, prefilled")
      ->check(CLI::Range(0.0, 1.0))
      ->check(NotNan());
  add("recall-kv-encoding", c.recall_kv_encoding,
      "kept history KV at rest: f16, q8 or q4, optionally +zstd")
      ->check(CLI::IsMember({"f16", "q8", "q4", "f16+zstd", "q8+zstd", "q4+zstd"}));
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
  add("remote-url", c.remote_url,
      "redis://[user:password@]host:port[/db]: the Redis (or Valkey) replicas share KV blocks, "
      "conversations and leases through; none = this replica alone");
  add("remote-prefix", c.remote_prefix, "key namespace in the shared Redis");
  add("remote-ttl", c.remote_ttl_s,
      "seconds a KV block stays in the shared Redis; 0 = until Redis evicts it "
      "(its maxmemory-policy)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  add("remote-lease-ms", c.remote_lease_ms,
      "a conversation's lease in the shared Redis: how long a crashed replica holds it")
      ->check(CLI::Range(int64_t{500}, int64_t{600000}));
  add("preload", c.preload_path,
      "JSON file: an array of prompts or {\"messages\": [...]} whose KV is computed at "
      "start-up and pinned");
  add("shutdown-grace", c.shutdown_grace_seconds,
      "seconds running requests get to finish on SIGINT/SIGTERM")
      ->check(CLI::Range(0.0, 3600.0))
      ->check(NotNan());
  app_.add_option("--config", config_path_,
                  "JSON config file; keys are flag names (default "
                  "~/.config/kvault/config.json when present, else <prefix>/etc/kvault/"
                  "config.json beside an installed <prefix>/bin/kvault). Flags win over KVAULT_* "
                  "environment variables, which win over the file");
}

void ServeOptions::ResetValues() {
  config_ = server::ServerConfig{};
  api_keys_.clear();
  config_path_.clear();
  max_body_mb_ = kDefaultMaxBodyMb;
  backend_.clear();
  kv_quant_.clear();
  dtype_.clear();
  kv_cache_memory_.clear();
  gpu_memory_utilization_ = 0;
}

std::optional<int> ServeOptions::Parse(int argc, char** argv) {
  ResetValues();
  if (auto exit_code = ParseArgs(app_, argc, argv)) return exit_code;
  const bool explicit_config = !config_path_.empty();
  std::string path = explicit_config ? config_path_ : DefaultConfigPath();
  if (!explicit_config && (path.empty() || !PathExists(path))) path = InstalledConfigPath();
  std::optional<int> finished;
  if (path.empty() || (!explicit_config && !PathExists(path))) {
    finished = Finish(Status::Ok());
  } else {
    Result<std::string> text = ReadFileToString(path);
    finished =
        Finish(text.ok() ? ApplyConfigText(app_, *text, "config file " + path) : text.status());
  }
  if (finished) return finished;
  // Here, not in Finish: it reads the model file, which ParseWithConfigText promises not to.
  if (Status sized = ApplyModelSizing(); !sized.ok()) return ReportError(sized);
  return std::nullopt;
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
  if (backend_ == "upstream" && config_.upstream_url.empty()) {
    return ReportError(InvalidArgumentError(
        "--backend upstream needs --upstream URL (e.g. http://127.0.0.1:8000/v1)"));
  }
  if (!config_.upstream_url.empty()) {
    if (Result<upstream::UpstreamEndpoint> url = upstream::ParseUpstreamUrl(config_.upstream_url);
        !url.ok()) {
      return ReportError(url.status());
    }
  }
  if (backend_ == "llama.cpp" && !config_.upstream_url.empty()) {
    return ReportError(InvalidArgumentError(
        "--backend llama.cpp runs the model here; --upstream forwards to another server: give "
        "one"));
  }
  // Recalled history's KV is shared into a conversation's sequence from a scratch one, which
  // llama.cpp can do only within one cell pool.
  if (!Given("--kv-unified") && !Given("--no-kv-unified")) {
    config_.kv_unified = config_.recall_kv != "off";
  }
  config_.max_body_bytes = static_cast<int64_t>(max_body_mb_) << 20;
  config_.api_keys = server::SplitKeys(api_keys_);
  if (config_.cache_dir.empty()) config_.cache_dir = DefaultCacheDir() + "/blocks";
  if (config_.data_dir.empty()) config_.data_dir = DefaultDataDir();
  if (!kv_quant_.empty()) {
    const std::string type = kv_quant_ == "int8" ? "q8_0" : "q4_0";
    if (Given("--kv-cache-dtype") && config_.kv_cache_dtype != type) {
      return ReportError(InvalidArgumentError("--kv-quant " + kv_quant_ + " is --kv-cache-dtype " +
                                              type + ", but --kv-cache-dtype " +
                                              config_.kv_cache_dtype + " is given too"));
    }
    config_.kv_cache_dtype = type;
  }
  return std::nullopt;
}

bool ServeOptions::Given(const std::string& flag) const {
  const CLI::Option* option = app_.get_option_no_throw(flag);
  return option != nullptr && option->count() > 0;
}

Status ServeOptions::ApplyModelSizing() {
  const bool by_memory = !kv_cache_memory_.empty();
  const bool by_gpu = gpu_memory_utilization_ > 0;
  const bool by_dtype = NormalDtype(dtype_).value_or("") != "";
  if (!by_dtype && !by_memory && !by_gpu) return Status::Ok();
  if (by_memory && by_gpu) {
    return InvalidArgumentError(
        "--kv-cache-memory and --gpu-memory-utilization both size the KV cache: give one");
  }
  if (by_gpu && config_.gpus == 0) {
    return InvalidArgumentError(
        "--gpu-memory-utilization needs --gpus N (without GPUs the KV cache is in RAM: size "
        "it with --kv-cache-memory)");
  }
  KV_ASSIGN_OR_RETURN(const ModelFacts facts, ReadModelFacts(config_.model_path));
  if (by_dtype) KV_RETURN_IF_ERROR(CheckModelDtype(dtype_, facts));
  if (!by_memory && !by_gpu) return Status::Ok();
  KvFitParams fit;
  if (by_memory) {
    fit.budget_name = "--kv-cache-memory " + kv_cache_memory_;
    KV_ASSIGN_OR_RETURN(fit.budget_bytes, ParseBytes(kv_cache_memory_));
  } else {
    KV_ASSIGN_OR_RETURN(const uint64_t device_bytes, GpuMemoryBytes(config_.gpus));
    const double usable = gpu_memory_utilization_ * static_cast<double>(device_bytes);
    fit.budget_name = "--gpu-memory-utilization " + std::to_string(gpu_memory_utilization_);
    if (usable <= static_cast<double>(facts.file_bytes)) {
      return InvalidArgumentError(fit.budget_name + " gives " +
                                  std::to_string(static_cast<uint64_t>(usable)) +
                                  " bytes of the GPUs', not more than the model's " +
                                  std::to_string(facts.file_bytes) + " bytes of weights");
    }
    fit.budget_bytes = static_cast<uint64_t>(usable) - facts.file_bytes;
  }
  KV_ASSIGN_OR_RETURN(fit.bytes_per_token, KvBytesPerToken(facts, config_.kv_cache_dtype));
  fit.window = config_.window;
  fit.window_given = Given("--window") || Given("--max-context");
  fit.threads = config_.conversation_threads;
  fit.threads_given = Given("--conversation-threads");
  fit.pinned = config_.pinned_sequences;
  fit.max_model_len = config_.max_model_len;
  fit.window_cap = std::min<int64_t>(config_.cache_size, 1 << 20);
  if (facts.n_ctx_train > 0) fit.window_cap = std::min(fit.window_cap, facts.n_ctx_train);
  KV_ASSIGN_OR_RETURN(const KvFit fitted, FitKvBudget(fit));
  config_.window = fitted.window;
  config_.conversation_threads = fitted.threads;
  config_.kv_budget_bytes = static_cast<int64_t>(fit.budget_bytes);
  config_.kv_bytes_per_token = static_cast<int64_t>(fit.bytes_per_token);
  return Status::Ok();
}

}  // namespace kvault::cli
