// conversation/journal.h: conversations on disk, so a restarted server knows every
// conversation's turns and where its KV is (the tail block of its last checkpoint; the full
// blocks are found by the block store's own recovery). One append-only record log per
// conversation (store/record_log.h) under <data-dir>/conversations/, named by a hash of its
// (scope, id) key:
//
//   record 1, header:  u8 1 | scope | id                         (length-prefixed strings)
//   later, updates:    u8 3 | varint kept | varint n | n x turn | 16-byte tail |
//                      varint clear zone first turn + 1
//   turn:              role | content | varint n_tokens | n_tokens x varint token id
//
// An update says: of the turns recorded so far keep the first `kept`, append these n, the KV
// tail block is now `tail`, and the window's clear zone starts at that turn. A turn is thus
// written once, when it happens, with its rendered tokens (a restart does not tokenize the
// history again); a client that rewrites history costs one record. Logs whose dropped turns
// outweigh the live ones are rewritten compactly at start-up.
//
// Thread-safety: all methods may be called from any thread; callers serialize writes to one
// conversation (its turn lock).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/kv/block_hash.h"

namespace kvault::conversation {

struct JournalTurn {
  std::string role;
  std::string content;
  std::vector<int32_t> tokens;  // the turn as rendered by the chat template
};

struct JournalEntry {
  std::string scope;
  std::string id;
  std::vector<JournalTurn> turns;
  kv::BlockName tail;
  int64_t clear_first_turn = -1;
};

class Journal {
 public:
  // Creates `dir` if needed and reads every conversation in it. Unreadable logs are skipped
  // with a log line (never deleted: they may be a newer format).
  static Result<std::unique_ptr<Journal>> Open(const std::string& dir);

  // The conversations found by Open.
  std::vector<JournalEntry> TakeRecovered();

  // Records the conversation's new state: the first `kept` recorded turns stay, `added`
  // follow, its KV tail block is `tail` and its clear zone starts at `clear_first_turn`.
  // Creates the log on first use.
  Status Record(const std::string& scope, const std::string& id, size_t kept,
                std::span<const JournalTurn> added, const kv::BlockName& tail,
                int64_t clear_first_turn);
  // Reads one conversation back (sessions need its turns' text). NotFound if it has no log.
  Result<JournalEntry> Read(const std::string& scope, const std::string& id) const;
  // Deletes the conversation's log (OK if it has none).
  Status Remove(const std::string& scope, const std::string& id);

 private:
  explicit Journal(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(const std::string& scope, const std::string& id) const;
  Status Load();

  const std::string dir_;
  std::vector<JournalEntry> recovered_;
};

}  // namespace kvault::conversation
