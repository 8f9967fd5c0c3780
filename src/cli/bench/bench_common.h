// cli/bench/bench_common.h: the `kvault bench ...` drivers' arithmetic and tools: summary
// statistics, finding llama.cpp's tools and running them as shell commands, and each driver's
// entry point (dispatched by cmd_bench.cc). Options, folders, servers and the report are in
// bench_harness.h.
//
// Thread-safety: all are safe to call from any thread.
#pragma once

#include <string>
#include <vector>

#include "kvault/base/json.h"
#include "kvault/base/result.h"

namespace kvault::cli {

struct BenchFigure {
  double mean = 0;
  double sd = 0;
};

BenchFigure Summarize(const std::vector<double>& values);
// Percentile (0..100) by linear interpolation; 0 for no values.
double Percentile(std::vector<double> values, double percentile);
// a / b, or 0 when b is 0.
double Ratio(double a, double b);
int DefaultThreadCount();

// The path of a llama.cpp tool (llama-bench, llama-server, ...) from the build this kvault
// links, or KVAULT_LLAMA_BIN_DIR; the bare name (PATH lookup) otherwise.
std::string LlamaToolPath(const std::string& name);
std::string ShellQuote(const std::string& text);
// Runs a shell command and returns its stdout; Internal error with its exit status if it
// fails.
Result<std::string> RunCommand(const std::string& command);
// Parses JSON from a tool's output, skipping anything before the first '[' or '{'.
Result<Json> ParseJsonText(const std::string& text);

// Subcommands of `kvault bench`.
int RunBenchEngine(int argc, char** argv);
int RunBenchServe(int argc, char** argv);
int RunBenchMemory(int argc, char** argv);
int RunBenchRecall(int argc, char** argv);
// bench recall's default mode (bench_recall_evidence.cc); RunBenchRecall runs it without --legacy.
int RunBenchRecallEvidence(int argc, char** argv);
int RunBenchResume(int argc, char** argv);
// bench resume with --modes kvault-ram,kvault-remote,kvault-off (issue 12).
int RunBenchCluster(int argc, char** argv);
int RunBenchFidelity(int argc, char** argv);
int RunBenchPrefix(int argc, char** argv);
int RunBenchReconnect(int argc, char** argv);
int RunBenchRecallTurn(int argc, char** argv);
int RunBenchFootprint(int argc, char** argv);
int RunBenchCrash(int argc, char** argv);
int RunBenchSoak(int argc, char** argv);
int RunBenchIsolation(int argc, char** argv);
int RunBenchTopics(int argc, char** argv);
int RunBenchUpstream(int argc, char** argv);

}  // namespace kvault::cli
