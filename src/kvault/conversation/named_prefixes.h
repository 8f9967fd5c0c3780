// conversation/named_prefixes.h: the prompt prefixes an operator declared by name (zKV's
// `[{"name": "default_system", "content": "...", "preload": true}]` in --preload), and how
// often requests used them: a request whose prompt starts with a prefix's tokens counts as
// one of its requests, and as a hit when at least those tokens' KV was reused.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <llama.h>

#include "kvault/base/mutex.h"

namespace kvault::conversation {

struct NamedPrefixStats {
  std::string name;
  int64_t tokens = 0;         // the prefix's length
  bool preloaded = false;     // prefilled at start-up
  int64_t pinned_tokens = 0;  // of it, held by pinned blocks
  int64_t requests = 0;       // requests whose prompt starts with it
  int64_t hits = 0;           // of those, the ones that reused its whole KV
};

class NamedPrefixes {
 public:
  void Add(std::string name, std::vector<llama_token> tokens, bool preloaded,
           int64_t pinned_tokens);
  // A request's prompt and how many of its leading tokens' KV was reused.
  void Record(std::span<const llama_token> prompt, int64_t cached_tokens);
  std::vector<NamedPrefixStats> Snapshot() const;
  bool empty() const;

 private:
  struct Entry {
    NamedPrefixStats stats;
    std::vector<llama_token> tokens;
  };
  mutable Mutex mu_;
  std::vector<Entry> entries_ KV_GUARDED_BY(mu_);
};

}  // namespace kvault::conversation
