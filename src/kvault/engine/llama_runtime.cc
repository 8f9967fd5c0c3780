#include "kvault/engine/llama_runtime.h"

#include <mutex>
#include <string_view>

#include <llama.h>

#include "kvault/base/log.h"

namespace kvault::engine {
namespace {

thread_local std::string t_last_error;
// llama.cpp writes one message in several callback calls; lines are assembled per thread.
thread_local std::string t_partial_line;
thread_local ggml_log_level t_partial_level = GGML_LOG_LEVEL_INFO;

LogLevel ToLogLevel(ggml_log_level level) {
  switch (level) {
    case GGML_LOG_LEVEL_ERROR: return LogLevel::kError;
    case GGML_LOG_LEVEL_WARN: return LogLevel::kWarning;
    default: return LogLevel::kDebug;  // llama.cpp's info is too chatty for kvault's info
  }
}

void EmitLine(ggml_log_level level, std::string line) {
  if (!line.empty() && line.back() == '\n') line.pop_back();
  if (line.empty()) return;
  if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) t_last_error = line;
  const LogLevel kv_level = ToLogLevel(level);
  if (kv_level >= GetLogLevel()) LogLine(kv_level, "llama.cpp: " + line);
}

void LlamaLogCallback(ggml_log_level level, const char* text, void* /*user_data*/) {
  if (level != GGML_LOG_LEVEL_CONT) t_partial_level = level;
  t_partial_line += text;
  if (!t_partial_line.empty() && t_partial_line.back() == '\n') {
    EmitLine(t_partial_level, std::move(t_partial_line));
    t_partial_line.clear();
  }
}

}  // namespace

void InitLlamaRuntime() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(LlamaLogCallback, nullptr);
    llama_backend_init();
  });
}

std::string TakeLastLlamaError() {
  std::string error = std::move(t_last_error);
  t_last_error.clear();
  return error;
}

std::string LlamaSystemInfo() {
  InitLlamaRuntime();
  return llama_print_system_info();
}

bool LlamaSupportsGpuOffload() {
  InitLlamaRuntime();
  return llama_supports_gpu_offload();
}

}  // namespace kvault::engine
