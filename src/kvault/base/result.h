// base/result.h: Result<T> holds either a value or a non-OK Status (abseil's StatusOr).
//
// Thread-safety: a value type, like Status.
#pragma once

#include <optional>
#include <type_traits>
#include <utility>

#include "kvault/base/check.h"
#include "kvault/base/status.h"

namespace kvault {

template <typename T>
class [[nodiscard]] Result {
 public:
  // REQUIRES: !status.ok(). An OK status without a value is our own bug.
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    KV_CHECK(!status_.ok(), "Result constructed from an OK status without a value");
  }
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  template <typename U, typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                                    !std::is_same_v<std::decay_t<U>, T> &&
                                                    !std::is_same_v<std::decay_t<U>, Status>>>
  Result(U&& value) : value_(T(std::forward<U>(value))) {}  // NOLINT: implicit by design

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  // REQUIRES: ok().
  T& value() & {
    KV_CHECK(ok(), "Result::value() on error: " + status_.ToString());
    return *value_;
  }
  const T& value() const& {
    KV_CHECK(ok(), "Result::value() on error: " + status_.ToString());
    return *value_;
  }
  // By value, not T&&: `for (x : F().value())` would otherwise iterate a dead temporary.
  T value() && {
    KV_CHECK(ok(), "Result::value() on error: " + status_.ToString());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // The value if ok(), otherwise `fallback`.
  T value_or(T fallback) const& { return ok() ? *value_ : std::move(fallback); }

 private:
  Status status_;  // OK when value_ holds a value.
  std::optional<T> value_;
};

}  // namespace kvault
