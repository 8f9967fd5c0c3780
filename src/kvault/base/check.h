// base/check.h: KV_CHECK aborts on a broken invariant of kvault's own code. Never use it for
// bad input, a corrupt file or a model mismatch: those return a Status.
#pragma once

#include <string_view>

namespace kvault::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              std::string_view message);
}  // namespace kvault::internal

#define KV_CHECK(condition, message)                                              \
  do {                                                                            \
    if (!(condition)) [[unlikely]] {                                              \
      ::kvault::internal::CheckFailed(__FILE__, __LINE__, #condition, (message)); \
    }                                                                             \
  } while (false)
