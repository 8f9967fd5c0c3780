// conversation/kv_source.h: the one decision of where a prompt prefix's KV comes from.
// The candidates, cheapest first:
//
//   own      the conversation's own sequence still holds it (parked on the device)
//   shared   another parked sequence holds it: its cells are shared (seq_cp, no copy)
//   restore  the block store has it in RAM or on disk: blocks are read, decoded and imported
//   none     recompute (prefill) everything
//
// The longest prefix wins; on a tie the cheaper source. A restore must also beat prefilling
// what the device lacks (under --restore auto): the store's estimate of the read time
// against the measured prefill rate.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string_view>

#include "kvault/base/result.h"

namespace kvault::conversation {

// --restore: how prefixes are reused.
enum class RestorePolicy {
  kAuto,    // own, shared or restore, whichever is cheapest (restore only if faster)
  kAlways,  // restore whenever the store has more than the device (benchmarks)
  kNever,   // no reuse at all: every prompt is prefilled in full (the no-cache baseline)
};
Result<RestorePolicy> ParseRestorePolicy(std::string_view name);

// kUpstream: --upstream mode, the upstream server's own prefix cache (as it reported).
enum class PrefixSource { kNone, kOwn, kShared, kRam, kDisk, kRemote, kUpstream };
std::string_view PrefixSourceName(PrefixSource source);

// What each source offers for one prompt, as seen at one instant on the engine thread.
struct KvSourceOptions {
  RestorePolicy policy = RestorePolicy::kAuto;
  size_t own = 0;                        // tokens the conversation's sequence holds of the prefix
  size_t shared = 0;                     // tokens the best other parked sequence holds
  size_t stored = 0;                     // tokens the block store holds
  double restore_seconds = 0;            // the store's estimate for reading `stored`
  double prefill_seconds_per_token = 0;  // measured
};

enum class KvSource { kNone, kOwn, kShared, kRestore };

struct KvSourceChoice {
  KvSource source = KvSource::kNone;
  size_t n_tokens = 0;
  // The store had more than the device, but prefilling the difference was estimated faster.
  bool recompute_chosen = false;
};

KvSourceChoice ChooseKvSource(const KvSourceOptions& options);

}  // namespace kvault::conversation
