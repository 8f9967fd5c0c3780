// conversation/journal.h: conversations on disk, so a restarted server knows every
// conversation's turns and where its KV is (the tail block of its last checkpoint; the full
// blocks are found by the block store's own recovery). One append-only record log per
// conversation (store/record_log.h) under <data-dir>/conversations/, named by a hash of its
// (scope, id) key:
//
//   record 1, header:  u8 1 | scope | id                         (length-prefixed strings)
//   later, updates:    u8 5 | varint kept | varint n | n x turn | 16-byte tail |
//                      varint clear zone first turn + 1 | varint unanswered turn + 1
//                      (u8 4: turns without their time; u8 3: also without the
//                      unanswered turn, as written before: both still read, times 0)
//   turn:              role | content | varint time | varint n_tokens |
//                      n_tokens x varint token id
//
// An update says: of the turns recorded so far keep the first `kept`, append these n, the KV
// tail block is now `tail`, the window's clear zone starts at that turn, and the last turn
// is (or not) a user turn still waiting for its reply. A turn is thus written once, when it
// happens, with its rendered tokens (a restart does not tokenize the history again). Turns
// an update does not keep are never lost: replay archives them as the conversation's next
// branch ("branch-1", "branch-2", ...; history_plan.h says when history is replaced). Every
// turn is written once and kept, so a log is never compacted.
//
// Thread-safety: all methods may be called from any thread; callers serialize writes to one
// conversation (its turn lock).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"
#include "kvault/kv/block_hash.h"

namespace kvault::conversation {

struct JournalTurn {
  std::string role;
  std::string content;
  std::vector<int32_t> tokens;  // the turn as rendered by the chat template
  int64_t time = 0;             // Unix seconds when it was said; 0 = unknown (older records)
};

// Turns a replaced history had from `from_turn` on, kept readable.
struct JournalBranch {
  std::string name;  // "branch-<n>", n counting from 1 per conversation
  int64_t from_turn = 0;
  std::vector<JournalTurn> turns;
};

struct JournalEntry {
  std::string scope;
  std::string id;
  std::vector<JournalTurn> turns;
  kv::BlockName tail;
  int64_t clear_first_turn = -1;
  int64_t unanswered_turn = -1;         // the last turn, stored but never answered; -1 if none
  std::vector<JournalBranch> branches;  // oldest first
};

// The name replay gives the conversation's n-th archived branch (from 1).
std::string BranchName(int64_t n);

// What an update records besides its turns.
struct JournalState {
  kv::BlockName tail;
  int64_t clear_first_turn = -1;
  int64_t unanswered_turn = -1;
};

// Where a journal's records are also written (conversation/remote_journal.h: a Redis list
// per conversation, so any replica can continue it). Records go there after the local log
// has them; a mirror failure never fails the turn (the local log is the source of truth).
class JournalMirror {
 public:
  virtual ~JournalMirror() = default;
  // `records` follow the `n_before` the mirror should already hold.
  virtual Status Append(const std::string& scope, const std::string& id, size_t n_before,
                        std::span<const std::string> records) = 0;
};

class Journal {
 public:
  // Creates `dir` if needed and reads every conversation in it. Unreadable logs are skipped
  // with a log line (never deleted: they may be a newer format).
  static Result<std::unique_ptr<Journal>> Open(const std::string& dir);

  // The conversations found by Open.
  std::vector<JournalEntry> TakeRecovered();

  // Records the conversation's new state: the first `kept` recorded turns stay (the others
  // become an archived branch), `added` follow, and `state`. Creates the log on first use.
  // Durable (fsynced) when it returns OK.
  Status Record(const std::string& scope, const std::string& id, size_t kept,
                std::span<const JournalTurn> added, const JournalState& state);
  // Reads one conversation back (sessions need its turns' text). NotFound if it has no log.
  Result<JournalEntry> Read(const std::string& scope, const std::string& id) const;
  // Deletes the conversation's log (OK if it has none).
  Status Remove(const std::string& scope, const std::string& id);

  // Every record of the conversation's log (NotFound if it has none), and how many it has.
  Result<std::vector<std::string>> Records(const std::string& scope, const std::string& id) const;
  size_t RecordCount(const std::string& scope, const std::string& id) const;
  // Replaces the conversation's log by `records` (another replica's newer state): the old
  // log, if any, is kept beside it as <name>.replaced-<unix ms> and said in a log line.
  // Corruption (and nothing changed) unless the records replay.
  Result<JournalEntry> Adopt(const std::string& scope, const std::string& id,
                             std::span<const std::string> records);
  // Records are also written to `mirror` (may be null) from now on.
  void SetMirror(JournalMirror* mirror) { mirror_ = mirror; }

 private:
  explicit Journal(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(const std::string& scope, const std::string& id) const;
  Status Load();

  const std::string dir_;
  std::vector<JournalEntry> recovered_;
  JournalMirror* mirror_ = nullptr;
  mutable Mutex mu_;
  // Records per conversation log, by conversation key (what Open read and Record added).
  std::unordered_map<std::string, size_t> counts_ KV_GUARDED_BY(mu_);
};

}  // namespace kvault::conversation
