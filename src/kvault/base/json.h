// base/json.h: the adapter around nlohmann::json, which throws: parsing and typed field
// access that return a Status instead. Code outside this file touches nlohmann::json only
// through calls that cannot throw (is_*(), contains(), find(), get_ref on a checked type,
// construction, dump with error_handler_t::replace).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kvault/base/result.h"

namespace kvault {

using Json = nlohmann::json;

// InvalidArgument with the parser's position for malformed text, or nesting beyond
// max_depth (a guard against stack exhaustion on hostile input).
Result<Json> ParseJson(std::string_view text, int max_depth = 64);

// Serializes without throwing: invalid UTF-8 in strings becomes U+FFFD.
std::string DumpJson(const Json& value, int indent = -1);

// Typed optional fields of an object: nullopt if absent or null, InvalidArgument if present
// with another type. `path` names the field in messages ("messages[2].content").
Result<std::optional<std::string>> OptionalString(const Json& object, std::string_view key,
                                                  std::string_view path);
Result<std::optional<double>> OptionalNumber(const Json& object, std::string_view key,
                                             std::string_view path);
Result<std::optional<int64_t>> OptionalInteger(const Json& object, std::string_view key,
                                               std::string_view path);
Result<std::optional<bool>> OptionalBool(const Json& object, std::string_view key,
                                         std::string_view path);

// A number field or `fallback` if absent or not a number (for reading trusted tool output).
double NumberOr(const Json& object, std::string_view key, double fallback);

}  // namespace kvault
