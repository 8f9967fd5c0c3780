// cli/serve_options.h: `kvault serve`'s flags, each also settable by a KVAULT_<NAME>
// environment variable and by a key of a JSON config file. Precedence: flag, then
// environment, then file, then the default. Unknown flags, unknown config keys and bad values
// stop with a one-line message and exit status 2.
//
// Other tools' names are accepted where they mean the same thing (--max-context = --window,
// --kessie-cache-size = --cache-size, --kv-quant int8 = --kv-cache-dtype q8_0, vLLM's
// --kv-cache-dtype auto/float16), and refused with the reason and kvault's nearest setting
// where they do not (--backend vllm, --kv-cache-dtype fp8_e5m2, --dtype that the GGUF file
// does not hold). Flags sized by the model (--kv-cache-memory, --gpu-memory-utilization,
// --dtype) read its GGUF header (no tensors) in Parse().
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cli/cli_util.h"

#include "kvault/server/server_config.h"

namespace kvault::cli {

class ServeOptions {
 public:
  ServeOptions();
  // Parses argv, then the config file (the one --config names, else the default one when
  // present). nullopt to go on; otherwise the exit status (0 after --help). Each parse starts
  // from the defaults, so one ServeOptions may parse again.
  std::optional<int> Parse(int argc, char** argv);
  // The same with the config file's content given as `config_text` (JSON) instead of read
  // from a file; none is read. For fuzz/config_fuzz.cc, which builds one ServeOptions and
  // parses every input with it (building its ~40 options costs far more than a parse).
  std::optional<int> ParseWithConfigText(int argc, char** argv, std::string_view config_text);
  const server::ServerConfig& config() const { return config_; }

 private:
  // The defaults again in every variable the options write (they stay bound to them).
  void ResetValues();
  // What both parses do once the config is applied (`config_applied` says how that went).
  std::optional<int> Finish(const Status& config_applied);
  // The settings that depend on the model file (--dtype, --kv-cache-memory,
  // --gpu-memory-utilization): checked against its GGUF header, the window and threads
  // derived. OK without reading the file when none of them is given.
  Status ApplyModelSizing();
  // Whether a flag, its environment variable or a config key set `flag` (e.g. "--window").
  bool Given(const std::string& flag) const;

  static constexpr int kDefaultMaxBodyMb = 64;

  CLI::App app_;
  server::ServerConfig config_;
  std::string api_keys_;
  std::string config_path_;
  int max_body_mb_ = kDefaultMaxBodyMb;
  std::string backend_;                // --backend: "" or llama.cpp (the others refused)
  std::string kv_quant_;               // --kv-quant: "", int8 or int4
  std::string dtype_;                  // --dtype as given ("" = auto)
  std::string kv_cache_memory_;        // --kv-cache-memory as typed ("4GB"); "" = off
  double gpu_memory_utilization_ = 0;  // --gpu-memory-utilization; 0 = off
};

}  // namespace kvault::cli
