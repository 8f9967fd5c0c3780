// memory/chunk_schema.h: the SQLite side of the chunk index: its tables (the schema is in
// chunk_schema.cc), every statement it runs, prepared once, and two helpers to run them.
// Used only by ChunkIndex.
//
// Thread-safety: statements are single-threaded; ChunkIndex holds its mutex around them.
#pragma once

#include <memory>

#include "kvault/base/result.h"
#include "kvault/base/sqlite.h"

namespace kvault::memory {

struct ChunkStatements {
  // Creates the tables if they are missing and prepares every statement.
  static Result<ChunkStatements> Prepare(SqliteDatabase* db);

  std::unique_ptr<SqliteStatement> find_conversation, add_conversation, save_conversation,
      remove_conversation, insert_chunk, insert_text, delete_text, delete_chunk, chunks_before,
      last_chunk_by, chunk_by_id, chunks_between, ranked, count_matches, search;
};

// Resets a statement when the scope ends, so no finished read keeps a snapshot open.
class StatementScope {
 public:
  explicit StatementScope(SqliteStatement* statement) : statement_(statement) {}
  ~StatementScope() { statement_->Reset().IgnoreError(); }
  StatementScope(const StatementScope&) = delete;
  StatementScope& operator=(const StatementScope&) = delete;
  SqliteStatement* operator->() { return statement_; }
  SqliteStatement& operator*() { return *statement_; }

 private:
  SqliteStatement* statement_;
};

// Binds `values` to parameters 1, 2, ... in order; stops at the first error.
template <typename... Values>
Status BindAll(StatementScope& statement, const Values&... values) {
  int index = 0;
  Status status;
  ((status = status.ok() ? statement->Bind(++index, values) : status), ...);
  return status;
}

}  // namespace kvault::memory
