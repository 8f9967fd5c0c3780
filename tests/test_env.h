// tests/test_env.h: where tests find what CTest prepared for them.
#pragma once

#include <cstdlib>
#include <string>

namespace kvault::testing {

// The generated tiny model (CTest fixture tiny_model; --output-scale 8, so greedy choices have
// clear margins).
inline std::string TestModelPath() {
  const char* path = std::getenv("KVAULT_TEST_MODEL");
  return path != nullptr ? path : "build/testdata/tiny.gguf";
}

// The kvault binary under test.
inline std::string KvaultBinary() {
  const char* path = std::getenv("KVAULT_BIN");
  return path != nullptr ? path : "build/kvault";
}

}  // namespace kvault::testing
