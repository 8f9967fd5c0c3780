// base/status_macros.h: early return on error (abseil's status_macros.h).
//
//   KV_RETURN_IF_ERROR(file.Sync());
//   KV_ASSIGN_OR_RETURN(auto bytes, ReadFile(path));
#pragma once

#include "kvault/base/result.h"
#include "kvault/base/status.h"

#define KV_STATUS_CONCAT_INNER(a, b) a##b
#define KV_STATUS_CONCAT(a, b) KV_STATUS_CONCAT_INNER(a, b)

#define KV_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::kvault::Status kv_status_ = (expr);    \
    if (!kv_status_.ok()) return kv_status_; \
  } while (false)

#define KV_ASSIGN_OR_RETURN(lhs, expr) \
  KV_ASSIGN_OR_RETURN_IMPL(KV_STATUS_CONCAT(kv_result_, __LINE__), lhs, expr)

#define KV_ASSIGN_OR_RETURN_IMPL(result, lhs, expr) \
  auto result = (expr);                             \
  if (!result.ok()) return result.status();         \
  lhs = std::move(result).value()
