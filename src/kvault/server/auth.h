// server/auth.h: API keys. Without keys every request is allowed and belongs to the scope "".
// With keys (--api-key, comma-separated for several), every route but /health needs
// "Authorization: Bearer <key>", and each key is its own scope: conversations made with one
// key cannot be listed, read or ended with another. A scope is a digest of the key, so keys
// never appear in memory dumps of the registry or in logs.
//
// Thread-safety: immutable after construction.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"

namespace kvault::server {

class ApiKeyAuth {
 public:
  explicit ApiKeyAuth(std::vector<std::string> keys);
  bool enabled() const { return !scopes_.empty(); }
  // The scope of the request's key; Unauthenticated if keys are required and it has none or
  // a wrong one.
  Result<std::string> Authorize(std::string_view authorization_header) const;

 private:
  struct Entry {
    std::string key;
    std::string scope;
  };
  std::vector<Entry> scopes_;
};

// Splits "a,b, c" into keys, dropping empty ones.
std::vector<std::string> SplitKeys(std::string_view text);

}  // namespace kvault::server
