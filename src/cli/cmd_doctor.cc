// kvault doctor: checks that this machine can run kvault, one verdict per line, and exits
// non-zero if anything needed is missing. With --write-config it also writes a starter config
// file (the serve flags whose checks passed) where `kvault serve` looks for one.
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/paths.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kvault/base/file.h"
#include "kvault/base/json.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/build_info.h"
#include "kvault/engine/llama_runtime.h"
#include "kvault/engine/model.h"

namespace kvault::cli {
namespace {

enum class Verdict { kOk, kWarn, kFail };

struct Report {
  int failures = 0;
  int warnings = 0;
  void Line(Verdict verdict, const std::string& what, const std::string& detail) {
    const char* label = verdict == Verdict::kOk     ? "ok  "
                        : verdict == Verdict::kWarn ? "warn"
                                                    : "FAIL";
    if (verdict == Verdict::kFail) ++failures;
    if (verdict == Verdict::kWarn) ++warnings;
    std::printf("%s  %-10s %s\n", label, what.c_str(), detail.c_str());
  }
};

void CheckCpu(Report& report) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0 || line.rfind("Features", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  }
  std::string found;
  for (const char* feature : {"avx", "avx2", "fma", "f16c", "avx512f", "neon", "asimd"}) {
    if (flags.find(std::string(" ") + feature + " ") != std::string::npos) {
      found += std::string(found.empty() ? "" : " ") + feature;
    }
  }
  const unsigned cores = std::thread::hardware_concurrency();
  const bool fast =
      found.find("avx2") != std::string::npos || found.find("asimd") != std::string::npos;
  report.Line(fast ? Verdict::kOk : Verdict::kWarn, "cpu",
              std::to_string(cores) + " cores; " + (found.empty() ? "no SIMD found" : found) +
                  (fast ? "" : " (no AVX2/NEON: inference will be slow)"));
}

// False when GPUs are asked for and this build cannot use them.
bool CheckLlama(Report& report, int gpus) {
  const bool gpu = engine::LlamaSupportsGpuOffload();
  report.Line(Verdict::kOk, "llama.cpp",
              std::string(kLlamaCommit).substr(0, 12) + ", backend " + (gpu ? "cpu+gpu" : "cpu"));
  if (gpus > 0 && !gpu) {
    report.Line(Verdict::kFail, "gpu",
                "--gpus " + std::to_string(gpus) +
                    " asked, but this build has no GPU backend (rebuild with KVAULT_CUDA=1)");
    return false;
  }
  return true;
}

// Each check returns whether it passed: only passed ones go into a written config.
bool CheckModel(Report& report, const std::string& path) {
  Result<std::unique_ptr<engine::Model>> model =
      engine::Model::Load({.path = path, .vocab_only = true});
  if (!model.ok()) {
    report.Line(Verdict::kFail, "model", model.status().message());
    return false;
  }
  Result<uint64_t> size = FileSize(path);
  report.Line(Verdict::kOk, "model",
              path + ": " + (*model)->info().architecture + ", vocab " +
                  std::to_string((*model)->info().n_vocab) + ", " +
                  std::to_string(size.value_or(0) >> 20) + " MiB, fingerprint " +
                  (*model)->fingerprint().ToHex().substr(0, 12));
  return true;
}

bool CheckPort(Report& report, const std::string& host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  const bool parsed = ::inet_pton(AF_INET, host.c_str(), &address.sin_addr) == 1;
  const bool bound =
      parsed && ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  const std::string where = host + ":" + std::to_string(port);
  report.Line(
      bound ? Verdict::kOk : Verdict::kFail, "port",
      bound ? where + " is free" : where + (parsed ? " is in use" : " is not an IPv4 address"));
  return bound;
}

bool CheckDirectory(Report& report, const std::string& what, const std::string& dir,
                    uint64_t need_bytes) {
  Status created = CreateDirectories(dir);
  const std::string probe = dir + "/.kvault-doctor";
  Status written = created.ok() ? WriteFileAtomic(probe, std::string_view("ok")) : created;
  RemoveFile(probe).IgnoreError();
  if (!written.ok()) {
    report.Line(Verdict::kFail, what, dir + " is not writable: " + written.message());
    return false;
  }
  const uint64_t free_bytes = FreeDiskBytes(dir).value_or(0);
  const std::string detail = dir + " writable, " + std::to_string(free_bytes >> 30) + " GiB free";
  report.Line(free_bytes >= need_bytes ? Verdict::kOk : Verdict::kWarn, what,
              free_bytes >= need_bytes
                  ? detail
                  : detail + " (less than " + std::to_string(need_bytes >> 30) + " GiB)");
  return true;
}

// `path` as an absolute path (a config file is read from wherever serve starts).
std::string Absolute(const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  char cwd[4096];
  return ::getcwd(cwd, sizeof(cwd)) != nullptr ? std::string(cwd) + "/" + path : path;
}

// Writes `config` to `path`. An existing file is kept: refused unless `replace`, and then
// first copied to the first free <path>.bak[.N]; `backup` says where (empty if none).
Status WriteConfig(const std::string& path, const Json& config, bool replace, std::string* backup) {
  if (PathExists(path)) {
    if (!replace) {
      return AlreadyExistsError(path + " exists; not replaced (--force keeps it as " + path +
                                ".bak and writes a new one)");
    }
    *backup = path + ".bak";
    for (int n = 1; PathExists(*backup); ++n) *backup = path + ".bak." + std::to_string(n);
    KV_ASSIGN_OR_RETURN(std::string old_text, ReadFileToString(path));
    KV_RETURN_IF_ERROR(WriteFileAtomic(*backup, old_text));
  }
  KV_RETURN_IF_ERROR(CreateDirectories(path.substr(0, path.rfind('/'))));
  return WriteFileAtomic(path, DumpJson(config, 2) + "\n");
}

// The "config" verdict line of --write-config: where it wrote what, or why it did not.
void WriteStarterConfig(Report& report, const Json& config, bool replace) {
  const std::string path = DefaultConfigPath();
  if (path.empty()) {
    report.Line(Verdict::kFail, "config", "neither XDG_CONFIG_HOME nor HOME is set");
    return;
  }
  std::string backup;
  if (Status written = WriteConfig(path, config, replace, &backup); !written.ok()) {
    report.Line(Verdict::kFail, "config", written.message());
    return;
  }
  std::string keys;
  for (auto it = config.begin(); it != config.end(); ++it) {
    keys += (keys.empty() ? "" : ", ") + it.key();
  }
  report.Line(Verdict::kOk, "config",
              "wrote " + path + " (" + (keys.empty() ? "no settings" : keys) + ")" +
                  (backup.empty() ? "" : "; the old file is kept as " + backup));
}

}  // namespace

int RunDoctor(int argc, char** argv) {
  CLI::App app("Check that this machine can run kvault.", "doctor");
  std::string model_path = "models/default.gguf";
  std::string host = "127.0.0.1";
  int port = 8200;
  int gpus = 0;
  std::string cache_dir = DefaultCacheDir() + "/blocks";
  std::string data_dir = DefaultDataDir();
  app.add_option("-m,--model", model_path, "model to check")->capture_default_str();
  app.add_option("--host", host, "address the server will listen on")->capture_default_str();
  app.add_option("--port", port, "port the server will listen on")->capture_default_str();
  app.add_option("--gpus", gpus, "GPUs the server will use")->capture_default_str();
  app.add_option("--cache-dir", cache_dir, "KV block cache folder")->capture_default_str();
  app.add_option("--data-dir", data_dir, "conversation and session folder")->capture_default_str();
  bool write_config = false;
  bool force = false;
  app.add_flag("--write-config", write_config,
               "write a starter config file for `kvault serve` (" + DefaultConfigPath() +
                   ") with the settings whose checks passed");
  app.add_flag("--force", force, "with --write-config: replace an existing file, kept as .bak");
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;
  SetLogLevel(LogLevel::kError);

  Report report;
  CheckCpu(report);
  const bool gpu_ok = CheckLlama(report, gpus);
  Json config = Json::object();
  if (CheckModel(report, model_path)) config["model"] = Absolute(model_path);
  if (CheckPort(report, host, port)) {
    config["host"] = host;
    config["port"] = port;
  }
  if (gpus > 0 && gpu_ok) config["gpus"] = gpus;
  if (CheckDirectory(report, "cache dir", cache_dir, 1ull << 30)) {
    config["cache_dir"] = Absolute(cache_dir);
  }
  if (CheckDirectory(report, "data dir", data_dir, 256ull << 20)) {
    config["data_dir"] = Absolute(data_dir);
  }
  if (write_config) WriteStarterConfig(report, config, force);
  std::printf("%s: %d problem(s), %d warning(s)\n", report.failures ? "not ready" : "ready",
              report.failures, report.warnings);
  return report.failures == 0 ? 0 : 1;
}

}  // namespace kvault::cli
