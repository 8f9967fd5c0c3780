#include "cli/bench/bench_common.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "kvault/base/file.h"
#include "kvault/build_info.h"

namespace kvault::cli {

BenchFigure Summarize(const std::vector<double>& values) {
  if (values.empty()) return {};
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / values.size();
  double sum_sq = 0;
  for (double v : values) sum_sq += (v - mean) * (v - mean);
  const double sd = values.size() > 1 ? std::sqrt(sum_sq / (values.size() - 1)) : 0.0;
  return {mean, sd};
}

double Percentile(std::vector<double> values, double percentile) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = percentile / 100.0 * (values.size() - 1);
  const size_t low = static_cast<size_t>(std::floor(rank));
  const size_t high = std::min(values.size() - 1, low + 1);
  return values[low] + (values[high] - values[low]) * (rank - low);
}

double Ratio(double a, double b) { return b == 0 ? 0 : a / b; }

int DefaultThreadCount() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 4 : static_cast<int>(n);
}

std::string LlamaToolPath(const std::string& name) {
  const char* env = std::getenv("KVAULT_LLAMA_BIN_DIR");
  const std::string dir = env != nullptr ? std::string(env) : std::string(kLlamaBinDir);
  if (!dir.empty() && PathExists(dir + "/" + name)) return dir + "/" + name;
  return name;
}

std::string ShellQuote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'')
      quoted += "'\\''";
    else
      quoted += c;
  }
  return quoted + "'";
}

Result<std::string> RunCommand(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return InternalError("cannot run: " + command);
  std::string output;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  if (status != 0) {
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return InternalError("command failed with exit status " + std::to_string(code) + ": " +
                         command + " (build llama.cpp's tools with `make llama-tools`)");
  }
  return output;
}

Result<Json> ParseJsonText(const std::string& text) {
  const size_t start = text.find_first_of("[{");
  if (start == std::string::npos) return InvalidArgumentError("no JSON in the output");
  return ParseJson(std::string_view(text).substr(start));
}

}  // namespace kvault::cli
