// libFuzzer target: `kvault serve`'s options (cli/serve_options.h) from all three sources.
// The input is split at NUL bytes: the first piece is the JSON config file's content
// (ServeOptions::ParseWithConfigText, the code Parse runs on the file it reads); each later
// piece is an argv entry ("--window", "512", ...) or, when it reads KVAULT_<NAME>=<value>, an
// environment variable set for this input only. Checks, beyond crashes, leaks and UB: an
// accepted configuration has every number within the range its flag declares and every
// name among the values its flag allows, whichever source it came from.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/serve_options.h"

#include "kvault/base/check.h"

namespace {

// The pieces of the input between NUL bytes (always at least one, maybe empty).
std::vector<std::string> SplitAtNul(std::string_view text) {
  std::vector<std::string> pieces;
  for (size_t start = 0;;) {
    const size_t nul = text.find('\0', start);
    pieces.emplace_back(text.substr(start, nul - start));
    if (nul == std::string_view::npos) return pieces;
    start = nul + 1;
  }
}

// `value` in [min, max]; false for NaN.
bool InRange(double value, double min, double max) { return value >= min && value <= max; }

bool OneOf(const std::string& value, std::initializer_list<std::string_view> allowed) {
  for (std::string_view name : allowed) {
    if (value == name) return true;
  }
  return false;
}

constexpr const char* kBounds = "an accepted setting is outside what its flag allows";

// The ranges and names serve_options.cc declares for each setting.
void CheckAccepted(const kvault::server::ServerConfig& c) {
  KV_CHECK(InRange(c.port, 0, 65535), kBounds);
  KV_CHECK(InRange(c.window, 64, 1 << 20), kBounds);
  KV_CHECK(InRange(static_cast<double>(c.cache_size), 64, static_cast<double>(int64_t{1} << 40)),
           kBounds);
  KV_CHECK(InRange(c.max_generation, 1, 1 << 20), kBounds);
  KV_CHECK(InRange(c.max_model_len, 0, 1 << 22), kBounds);
  KV_CHECK(InRange(c.threads, 0, 1024), kBounds);
  KV_CHECK(InRange(c.gpus, 0, 64), kBounds);
  KV_CHECK(InRange(c.conversation_threads, 1, 256), kBounds);
  KV_CHECK(InRange(c.conversation_queue, 0, 100000), kBounds);
  KV_CHECK(InRange(c.fog_alpha, 0, 100), kBounds);
  KV_CHECK(InRange(c.recall_budget, 0, 1 << 20), kBounds);
  KV_CHECK(InRange(c.recall_min_score, 0, 1e9), kBounds);
  KV_CHECK(InRange(c.max_recalls, 0, 16), kBounds);
  KV_CHECK(InRange(c.max_connections, 16, 65536), kBounds);
  KV_CHECK(InRange(static_cast<double>(c.max_body_bytes), 1 << 20, 4096.0 * (1 << 20)), kBounds);
  KV_CHECK(InRange(c.prefill_chunk, 1, 1 << 16), kBounds);
  KV_CHECK(InRange(static_cast<double>(c.cache_ram_mb), 0, 1 << 30), kBounds);
  KV_CHECK(InRange(c.cache_disk_gb, 0, 1e6), kBounds);
  KV_CHECK(InRange(c.block_size, 16, 1 << 16), kBounds);
  KV_CHECK(InRange(c.shutdown_grace_seconds, 0, 3600), kBounds);
  KV_CHECK(OneOf(c.kv_cache_dtype, {"f16", "q8_0", "q4_0"}), kBounds);
  KV_CHECK(OneOf(c.log_format, {"text", "json"}), kBounds);
  KV_CHECK(OneOf(c.log_level, {"debug", "info", "warning", "error"}), kBounds);
  KV_CHECK(OneOf(c.cache_encoding, {"f16", "q8", "q4", "f16+zstd", "q8+zstd", "q4+zstd"}), kBounds);
  KV_CHECK(OneOf(c.eviction, {"lru", "lfu", "cost"}), kBounds);
  KV_CHECK(OneOf(c.restore, {"auto", "always", "never"}), kBounds);
  KV_CHECK(!c.cache_dir.empty() && !c.data_dir.empty(), kBounds);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> pieces = SplitAtNul({reinterpret_cast<const char*>(data), size});
  std::vector<std::string> args = {"serve"};
  // putenv, not setenv: glibc keeps every string setenv ever made, which would grow with
  // each input. The pieces outlive the parse.
  std::vector<std::string> env_names;
  for (size_t i = 1; i < pieces.size(); ++i) {
    const size_t equals = pieces[i].find('=');
    if (pieces[i].starts_with("KVAULT_") && equals != std::string::npos) {
      env_names.push_back(pieces[i].substr(0, equals));
      ::putenv(pieces[i].data());
    } else {
      args.push_back(std::move(pieces[i]));
    }
  }
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // One parser for every input: building its options costs far more than a parse, and each
  // parse starts from the defaults. Bad values are reported on stderr, as `kvault serve` does.
  static kvault::cli::ServeOptions options;
  const std::optional<int> exit_code =
      options.ParseWithConfigText(static_cast<int>(args.size()), argv.data(), pieces[0]);
  if (!exit_code) CheckAccepted(options.config());
  for (const std::string& name : env_names) ::unsetenv(name.c_str());
  return 0;
}
