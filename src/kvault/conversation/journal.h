// conversation/journal.h: conversations on disk, so a restarted server knows every
// conversation's turns and where its KV is (the tail block of its last checkpoint; the full
// blocks are found by the block store's own recovery). One append-only record log per
// conversation (store/record_log.h) under <data-dir>/conversations/, named by a hash of its
// (scope, id) key:
//
//   record 1, header:  u8 1 | scope | id                         (length-prefixed strings)
//   later, updates:    u8 2 | varint kept | varint n | n x (role | content) | 16-byte tail
//
// An update says: of the turns recorded so far keep the first `kept`, append these n, and
// the KV tail block is now `tail`. A turn is thus written once, when it happens; a client
// that rewrites history costs one record. Logs whose dropped turns outweigh the live ones are
// rewritten compactly at start-up.
//
// Thread-safety: all methods may be called from any thread; callers serialize writes to one
// conversation (its turn lock).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/engine/chat_template.h"
#include "kvault/kv/block_hash.h"

namespace kvault::conversation {

struct JournalEntry {
  std::string scope;
  std::string id;
  std::vector<engine::ChatMessage> turns;
  kv::BlockName tail;
};

class Journal {
 public:
  // Creates `dir` if needed and reads every conversation in it. Unreadable logs are skipped
  // with a log line (never deleted: they may be a newer format).
  static Result<std::unique_ptr<Journal>> Open(const std::string& dir);

  // The conversations found by Open.
  std::vector<JournalEntry> TakeRecovered();

  // Records the conversation's new state: the first `kept` recorded turns stay, `added`
  // follow, and its KV tail block is `tail`. Creates the log on first use.
  Status Record(const std::string& scope, const std::string& id, size_t kept,
                std::span<const engine::ChatMessage> added, const kv::BlockName& tail);
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
