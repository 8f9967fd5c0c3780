#include "kvault/server/auth.h"

#include "kvault/base/hash.h"

namespace kvault::server {
namespace {

// Compares without an early exit, so response time does not reveal a matching prefix.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

}  // namespace

std::vector<std::string> SplitKeys(std::string_view text) {
  std::vector<std::string> keys;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view key = text.substr(start, end - start);
    while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
    while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
    if (!key.empty()) keys.emplace_back(key);
    start = end + 1;
  }
  return keys;
}

ApiKeyAuth::ApiKeyAuth(std::vector<std::string> keys) {
  for (std::string& key : keys) {
    std::string scope =
        "key-" + HashBytes128(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(key.data()),
                                                       key.size()))
                     .ToHex();
    scopes_.push_back({std::move(key), std::move(scope)});
  }
}

Result<std::string> ApiKeyAuth::Authorize(std::string_view header) const {
  if (!enabled()) return std::string();
  constexpr std::string_view kBearer = "Bearer ";
  if (header.substr(0, kBearer.size()) != kBearer) {
    return UnauthenticatedError("missing API key: send 'Authorization: Bearer <key>'")
        .WithDetail(ErrorDetail::kInvalidApiKey);
  }
  const std::string_view presented = header.substr(kBearer.size());
  for (const Entry& entry : scopes_) {
    if (ConstantTimeEquals(presented, entry.key)) return entry.scope;
  }
  return UnauthenticatedError("invalid API key").WithDetail(ErrorDetail::kInvalidApiKey);
}

}  // namespace kvault::server
