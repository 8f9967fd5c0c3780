// engine/llama_runtime.h: process-wide llama.cpp set-up. InitLlamaRuntime() initialises the
// backends once and routes llama.cpp's log into kvault's (its info lines at debug level), so
// one --log-format governs every line. llama.cpp reports most failures only in its log, so
// the last error line it wrote on this thread is kept for the Status that engine/ returns.
//
// Thread-safety: all functions may be called from any thread.
#pragma once

#include <string>

namespace kvault::engine {

// Idempotent.
void InitLlamaRuntime();

// The last error or warning llama.cpp logged on the calling thread ("" if none), then forgets
// it. Used to explain a nullptr / false return.
std::string TakeLastLlamaError();

// llama.cpp's description of the CPU/GPU features it was built with.
std::string LlamaSystemInfo();
bool LlamaSupportsGpuOffload();

}  // namespace kvault::engine
