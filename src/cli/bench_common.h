// cli/bench_common.h: what the `kvault bench ...` commands share: summary statistics, running
// llama.cpp's tools as child processes, and finding them.
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
int RunBenchResume(int argc, char** argv);
int RunBenchFidelity(int argc, char** argv);
int RunBenchPrefix(int argc, char** argv);
int RunBenchReconnect(int argc, char** argv);
int RunBenchFootprint(int argc, char** argv);

}  // namespace kvault::cli
