#include "kvault/base/json.h"

#include <cmath>

namespace kvault {
namespace {

// Nesting depth of the text, counted before parsing so that a hostile body cannot exhaust
// the parser's recursion. Brackets inside strings are skipped.
int MaxNesting(std::string_view text) {
  int depth = 0;
  int max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '[' || c == '{')
      max_depth = std::max(max_depth, ++depth);
    else if (c == ']' || c == '}')
      --depth;
  }
  return max_depth;
}

std::string TypeName(const Json& value) { return value.type_name(); }

const Json* Field(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

Status WrongType(std::string_view path, std::string_view want, const Json& got) {
  return InvalidArgumentError("'" + std::string(path) + "' must be " + std::string(want) +
                              ", got " + TypeName(got));
}

}  // namespace

Result<Json> ParseJson(std::string_view text, int max_depth) {
  if (MaxNesting(text) > max_depth) {
    return InvalidArgumentError("JSON nested deeper than " + std::to_string(max_depth) + " levels");
  }
  Json value = Json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return InvalidArgumentError("malformed JSON");
  return value;
}

std::string DumpJson(const Json& value, int indent) {
  return value.dump(indent, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

Result<std::optional<std::string>> OptionalString(const Json& object, std::string_view key,
                                                  std::string_view path) {
  const Json* field = Field(object, key);
  if (field == nullptr) return std::optional<std::string>();
  if (!field->is_string()) return WrongType(path, "a string", *field);
  return std::optional<std::string>(field->get_ref<const std::string&>());
}

Result<std::optional<double>> OptionalNumber(const Json& object, std::string_view key,
                                             std::string_view path) {
  const Json* field = Field(object, key);
  if (field == nullptr) return std::optional<double>();
  if (!field->is_number()) return WrongType(path, "a number", *field);
  const double value = field->get<double>();
  if (!std::isfinite(value))
    return InvalidArgumentError("'" + std::string(path) + "' is not finite");
  return std::optional<double>(value);
}

Result<std::optional<int64_t>> OptionalInteger(const Json& object, std::string_view key,
                                               std::string_view path) {
  const Json* field = Field(object, key);
  if (field == nullptr) return std::optional<int64_t>();
  if (field->is_number_unsigned()) {
    const uint64_t value = field->get<uint64_t>();
    if (value > static_cast<uint64_t>(INT64_MAX)) {
      return InvalidArgumentError("'" + std::string(path) + "' is too large");
    }
    return std::optional<int64_t>(static_cast<int64_t>(value));
  }
  if (field->is_number_integer()) return std::optional<int64_t>(field->get<int64_t>());
  if (field->is_number_float()) {
    const double value = field->get<double>();
    if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 9.0e15) {
      return std::optional<int64_t>(static_cast<int64_t>(value));
    }
  }
  return WrongType(path, "an integer", *field);
}

Result<std::optional<bool>> OptionalBool(const Json& object, std::string_view key,
                                         std::string_view path) {
  const Json* field = Field(object, key);
  if (field == nullptr) return std::optional<bool>();
  if (!field->is_boolean()) return WrongType(path, "a boolean", *field);
  return std::optional<bool>(field->get<bool>());
}

double NumberOr(const Json& object, std::string_view key, double fallback) {
  const Json* field = Field(object, key);
  if (field == nullptr || !field->is_number()) return fallback;
  return field->get<double>();
}

}  // namespace kvault
