#include "cli/bench/bench_harness.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>

#include "cli/bench/bench_common.h"
#include "cli/cli_util.h"
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/file.h"
#include "kvault/base/status_macros.h"

namespace kvault::cli {

void AddModelOption(CLI::App& app, BenchOptions& options, const std::string& help) {
  app.add_option("-m,--model", options.model_path, help)->required();
}

void AddThreadsOption(CLI::App& app, BenchOptions& options) {
  app.add_option("-t,--threads", options.threads, "CPU threads; 0 = all cores")
      ->capture_default_str();
}

void AddKvaultArgsOption(CLI::App& app, BenchOptions& options) {
  app.add_option("--kvault-arg", options.kvault_args,
                 "an extra flag for kvault serve (repeat it), e.g. --kvault-arg=--eviction=lru");
}

int RunDriver(CLI::App& app, BenchOptions& options, int argc, char** argv,
              const std::function<Result<Json>()>& measure,
              const std::function<void(const Json&)>& print_table) {
  app.add_flag("--json", options.json, "print the report as JSON");
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;
  const Result<Json> report = measure();
  if (!report.ok()) return ReportError(report.status());
  if (options.json) {
    std::printf("%s\n", DumpJson(*report, 2).c_str());
  } else {
    print_table(*report);
  }
  return 0;
}

std::string TempPath(std::string_view name) {
  std::error_code error;
  const std::filesystem::path tmp = std::filesystem::temp_directory_path(error);
  return ((error ? std::filesystem::path("/tmp") : tmp) / name).string();
}

Result<std::unique_ptr<BenchDir>> BenchDir::Create(const std::string& requested) {
  if (!requested.empty()) {
    KV_RETURN_IF_ERROR(CreateDirectories(requested));
    return std::unique_ptr<BenchDir>(new BenchDir(requested, false));
  }
  std::string pattern = TempPath("kvault_bench_XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return ErrnoError("bench: cannot create a temporary directory", errno);
  }
  return std::unique_ptr<BenchDir>(new BenchDir(pattern, true));
}

std::unique_ptr<BenchDir> BenchDir::Scratch(std::string_view bench, std::string_view tag) {
  std::string name = "kvault-bench-" + std::string(bench) + "-" + std::to_string(::getpid());
  if (!tag.empty()) name += "-" + std::string(tag);
  auto dir = std::unique_ptr<BenchDir>(new BenchDir(TempPath(name), true));
  std::error_code ignored;
  std::filesystem::remove_all(dir->path_, ignored);  // a crashed run's, with the same pid
  return dir;
}

BenchDir::~BenchDir() {
  std::error_code ignored;
  if (removed_) std::filesystem::remove_all(path_, ignored);
}

std::vector<std::string> ServerArgv(const ServerParams& p, int port) {
  std::vector<std::string> argv;
  auto add = [&argv](std::initializer_list<std::string> args) {
    argv.insert(argv.end(), args.begin(), args.end());
  };
  if (p.kind == ServerKind::kLlamaServer) {
    add({LlamaToolPath("llama-server"), "-m", p.model_path, "--port", std::to_string(port)});
    add({"-np", std::to_string(p.slots), "-c", std::to_string(p.window * p.slots)});
    add({"-t", std::to_string(p.threads), "--no-webui"});
  } else {
    add({SelfPath(), "serve", "--model", p.model_path, "--port", std::to_string(port)});
    if (p.slots > 0) add({"--conversation-threads", std::to_string(p.slots)});
    add({"--window", std::to_string(p.window), "--threads", std::to_string(p.threads)});
    if (!p.log_level.empty()) add({"--log-level", p.log_level});
    if (!p.state_dir.empty()) {
      add({"--cache-dir", p.state_dir + "/blocks", "--data-dir", p.state_dir + "/data"});
    }
  }
  argv.insert(argv.end(), p.extra_args.begin(), p.extra_args.end());
  return argv;
}

Result<std::unique_ptr<BenchServer>> BenchServer::Start(ServerParams params,
                                                        std::unique_ptr<BenchDir> scratch) {
  if (scratch != nullptr) {
    params.state_dir = scratch->path();
    if (params.log_path.empty()) params.log_path = scratch->log_path();
  }
  if (params.log_path.empty()) return InvalidArgumentError("bench: a server needs a log path");
  auto server =
      std::unique_ptr<BenchServer>(new BenchServer(std::move(params), std::move(scratch)));
  KV_ASSIGN_OR_RETURN(int port, FreePort());
  const ServerParams& p = server->params_;
  Result<std::unique_ptr<ChildServer>> child =
      ChildServer::Start(ServerArgv(p, port), port, p.log_path, p.timeout_seconds);
  if (!child.ok()) {
    // A server that ran and failed: the error sends the reader to its log. One that never
    // ran (no binary) wrote nothing worth keeping.
    std::error_code ignored;
    server->params_.keep_log =
        std::filesystem::file_size(p.log_path, ignored) > 0 && ignored.value() == 0;
    return child.status();
  }
  server->child_ = std::move(child).value();
  return server;
}

BenchServer::~BenchServer() {
  child_.reset();
  scratch_.reset();
  std::error_code ignored;
  if (!params_.keep_log) std::filesystem::remove(params_.log_path, ignored);
}

std::string BenchServer::ReadLog() const {
  return ReadFileToString(params_.log_path).value_or(std::string());
}

Result<Json> BenchServer::GetJson(const std::string& path) const {
  httplib::Client client("127.0.0.1", port());
  httplib::Result result = client.Get(path);
  if (!result || result->status != 200) return InternalError("GET " + path + " failed");
  return ParseJson(result->body);
}

Result<StreamTiming> BenchServer::Chat(const Json& body) const {
  StreamTiming timing = StreamChat(port(), body, BenchClock::now());
  KV_RETURN_IF_ERROR(StreamStatus(timing));
  return timing;
}

}  // namespace kvault::cli
