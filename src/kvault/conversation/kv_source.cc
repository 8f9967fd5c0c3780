#include "kvault/conversation/kv_source.h"

#include <string>

namespace kvault::conversation {

Result<RestorePolicy> ParseRestorePolicy(std::string_view name) {
  if (name == "auto") return RestorePolicy::kAuto;
  if (name == "always") return RestorePolicy::kAlways;
  if (name == "never") return RestorePolicy::kNever;
  return InvalidArgumentError("unknown restore policy '" + std::string(name) +
                              "' (expected auto, always or never)");
}

std::string_view PrefixSourceName(PrefixSource source) {
  switch (source) {
    case PrefixSource::kNone: return "none";
    case PrefixSource::kOwn: return "own";
    case PrefixSource::kShared: return "shared";
    case PrefixSource::kRam: return "ram";
    case PrefixSource::kDisk: return "disk";
    case PrefixSource::kRemote: return "remote";
    case PrefixSource::kUpstream: return "upstream";
  }
  return "none";
}

KvSourceChoice ChooseKvSource(const KvSourceOptions& options) {
  KvSourceChoice choice;
  if (options.policy == RestorePolicy::kNever) return choice;
  // The device first: own cells cost nothing, shared ones a cell copy.
  if (options.own > 0 && options.own >= options.shared) {
    choice = {KvSource::kOwn, options.own, false};
  } else if (options.shared > 0) {
    choice = {KvSource::kShared, options.shared, false};
  }
  if (options.stored <= choice.n_tokens) return choice;
  // The store has more: restoring it competes with prefilling what the device lacks.
  const double prefill_seconds =
      static_cast<double>(options.stored - choice.n_tokens) * options.prefill_seconds_per_token;
  if (options.policy == RestorePolicy::kAuto && options.restore_seconds >= prefill_seconds) {
    choice.recompute_chosen = true;
    return choice;
  }
  return {KvSource::kRestore, options.stored, false};
}

}  // namespace kvault::conversation
