// cli/bench/bench_harness.h: what every `kvault bench <thing>` driver shares, so that each
// bench_<thing>.cc holds only its workload, its measurement and its table:
//
//   options  -m/--model, -t/--threads, --kvault-arg and --json, with the same names, help and
//            defaults in every driver (bench/run_all.sh and bench/RESULTS.md rely on them),
//            and a helper for the bounded numeric options every driver has;
//   folders  BenchDir: a temporary folder (or one the user named), removed when the
//            benchmark is done with it;
//   servers  BenchServer: `kvault serve` or `llama-server` as a child process on a free port,
//            with one argv per setting for both (ServerArgv), ready once GET /health answers;
//   running  RunDriver: parses the command line, measures, and prints the report as indented
//            JSON with --json, as the driver's table otherwise; an error as "kvault: error:
//            ..." and its exit code.
//
// A driver is then: its options struct (derived from BenchOptions), Result<Json> Measure(),
// void PrintTable(const Json& report), and RunBench<Thing>() registering its options:
//
//   CLI::App app("What it measures.", "bench thing");
//   ThingOptions o;
//   AddModelOption(app, o);
//   AddBoundedOption(app, "--rounds", o.rounds, "interleaved rounds", 1, 50);
//   AddThreadsOption(app, o);
//   return RunDriver(app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
//
// Thread-safety: BenchServer's const methods may be called from several client threads at
// once; everything else is for the driver's main thread.
#pragma once

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "cli/bench/bench_client.h"
#include "cli/bench/child_process.h"
#include <CLI/CLI.hpp>

#include "kvault/base/json.h"
#include "kvault/base/result.h"

namespace kvault::cli {

// The options every driver has (the base of its own options struct). A driver registers only
// those it uses, with the functions below, in the order its --help lists them; RunDriver adds
// --json, last.
struct BenchOptions {
  std::string model_path;                // -m,--model
  int threads = 0;                       // -t,--threads; 0 = all cores
  std::vector<std::string> kvault_args;  // --kvault-arg: extra `kvault serve` flags
  bool json = false;                     // --json
};

// -m,--model, required. `help` says what of the model is used.
void AddModelOption(CLI::App& app, BenchOptions& options,
                    const std::string& help = "GGUF model file");
// -t,--threads, default 0 (all cores).
void AddThreadsOption(CLI::App& app, BenchOptions& options);
// --kvault-arg, repeatable: flags the driver appends to every `kvault serve` it starts.
void AddKvaultArgsOption(CLI::App& app, BenchOptions& options);

// An option whose default --help shows and whose values outside [min, max] are refused.
template <typename T>
CLI::Option* AddBoundedOption(CLI::App& app, const std::string& name, T& value,
                              const std::string& help, std::type_identity_t<T> min,
                              std::type_identity_t<T> max) {
  return app.add_option(name, value, help)->capture_default_str()->check(CLI::Range(min, max));
}

// Adds --json and parses argv (ParseArgs: --help or a bad flag ends the command here); then
// runs `measure` and prints its report, as indented JSON with --json and with print_table
// otherwise, or its error as one line (ReportError). Returns the exit status.
int RunDriver(CLI::App& app, BenchOptions& options, int argc, char** argv,
              const std::function<Result<Json>()>& measure,
              const std::function<void(const Json&)>& print_table);

// `name` in the system's temporary folder (/tmp when it has none).
std::string TempPath(std::string_view name);

// A folder a benchmark works in.
class BenchDir {
 public:
  // The folder asked for (created if missing, kept afterwards), or a new uniquely named
  // temporary one, removed with this object, when `requested` is "".
  static Result<std::unique_ptr<BenchDir>> Create(const std::string& requested);
  // TempPath("kvault-bench-<bench>-<pid>[-<tag>]"): what an earlier run left there is removed
  // now, the folder itself with this object. Not created: the server it is for creates what it
  // needs. Its log_path() lies beside it and stays.
  static std::unique_ptr<BenchDir> Scratch(std::string_view bench, std::string_view tag = "");
  ~BenchDir();
  BenchDir(const BenchDir&) = delete;
  BenchDir& operator=(const BenchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string log_path() const { return path_ + ".log"; }

 private:
  BenchDir(std::string path, bool removed) : path_(std::move(path)), removed_(removed) {}
  std::string path_;
  bool removed_;  // at destruction
};

enum class ServerKind { kKvault, kLlamaServer };

// One server to measure. Where both servers have a setting, one field sets it for both.
struct ServerParams {
  ServerKind kind = ServerKind::kKvault;
  std::string model_path;
  int threads = 0;  // kvault --threads, llama-server -t
  int window = 0;   // tokens per sequence: kvault --window; llama-server -c window * slots
  // kvault --conversation-threads, llama-server -np. 0: kvault's default (the flag is left
  // out); llama-server needs one.
  int slots = 0;
  std::string log_level = "warning";  // kvault --log-level; "" leaves kvault's default
  // kvault --cache-dir <state_dir>/blocks --data-dir <state_dir>/data; "" leaves kvault's
  // defaults. BenchServer::Start sets it to the scratch folder it is given.
  std::string state_dir;
  std::vector<std::string> extra_args;  // appended as given
  std::string log_path;                 // stdout and stderr; "" = beside the scratch folder
  int timeout_seconds = 600;            // for GET /health to answer 200
  // The log goes with the server, so a bench leaves nothing in the temp folder, unless the
  // server failed to start (the error names the log) or KVAULT_BENCH_KEEP_LOGS is set.
  bool keep_log = std::getenv("KVAULT_BENCH_KEEP_LOGS") != nullptr;
};

// The command line of `params.kind` listening on `port`.
std::vector<std::string> ServerArgv(const ServerParams& params, int port);

// A server under measurement, and the scratch folder it keeps its state in, if any.
class BenchServer {
 public:
  // Starts params.kind on a free port and waits for it to be healthy. `scratch` (optional)
  // becomes kvault's state folder and goes with the server.
  static Result<std::unique_ptr<BenchServer>> Start(ServerParams params,
                                                    std::unique_ptr<BenchDir> scratch = nullptr);
  ~BenchServer();  // stops the server, then removes its scratch folder and log (keep_log)
  BenchServer(const BenchServer&) = delete;
  BenchServer& operator=(const BenchServer&) = delete;

  int port() const { return child_->port(); }
  const std::string& log_path() const { return params_.log_path; }
  // The server's output so far; "" if the log cannot be read.
  std::string ReadLog() const;
  // GET `path` as JSON; an error unless it answers 200 with JSON.
  Result<Json> GetJson(const std::string& path) const;
  // One streamed chat request timed from now; a failed one is an error (StreamStatus).
  Result<StreamTiming> Chat(const Json& body) const;
  // kill -9 (crash trials); the scratch folder stays until this object goes.
  void Kill() { child_->Kill(); }

 private:
  BenchServer(ServerParams params, std::unique_ptr<BenchDir> scratch)
      : params_(std::move(params)), scratch_(std::move(scratch)) {}
  ServerParams params_;
  std::unique_ptr<BenchDir> scratch_;  // outlives child_
  std::unique_ptr<ChildServer> child_;
};

}  // namespace kvault::cli
