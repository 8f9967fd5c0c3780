#include "kvault/conversation/named_prefixes.h"

#include <algorithm>
#include <utility>

namespace kvault::conversation {

void NamedPrefixes::Add(std::string name, std::vector<llama_token> tokens, bool preloaded,
                        int64_t pinned_tokens) {
  Entry entry;
  entry.stats.name = std::move(name);
  entry.stats.tokens = static_cast<int64_t>(tokens.size());
  entry.stats.preloaded = preloaded;
  entry.stats.pinned_tokens = pinned_tokens;
  entry.tokens = std::move(tokens);
  MutexLock lock(&mu_);
  entries_.push_back(std::move(entry));
}

void NamedPrefixes::Record(std::span<const llama_token> prompt, int64_t cached_tokens) {
  MutexLock lock(&mu_);
  for (Entry& entry : entries_) {
    if (entry.tokens.empty() || entry.tokens.size() > prompt.size() ||
        !std::equal(entry.tokens.begin(), entry.tokens.end(), prompt.begin())) {
      continue;
    }
    ++entry.stats.requests;
    if (cached_tokens >= entry.stats.tokens) ++entry.stats.hits;
  }
}

std::vector<NamedPrefixStats> NamedPrefixes::Snapshot() const {
  MutexLock lock(&mu_);
  std::vector<NamedPrefixStats> out;
  for (const Entry& entry : entries_) out.push_back(entry.stats);
  return out;
}

bool NamedPrefixes::empty() const {
  MutexLock lock(&mu_);
  return entries_.empty();
}

}  // namespace kvault::conversation
