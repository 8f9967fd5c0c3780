// base/sqlite.h: a small RAII layer over SQLite's C API that returns Status: open a database,
// execute statements, prepare, bind, step, read columns. SQLite itself is the real thing
// (Debian's libsqlite3, FTS5 included); this only removes the error-code plumbing.
//
// Thread-safety: a Database may be used from several threads (SQLite's serialized mode), but
// a Statement belongs to one thread at a time. Callers that need transactions across calls
// hold their own mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "kvault/base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kvault {

class SqliteStatement;

class SqliteDatabase {
 public:
  // Opens or creates the database file (":memory:" for a private in-memory one) in WAL mode.
  // An existing file on a read-only disk or folder is opened read-only, so what it holds
  // stays readable; writes then fail with kInsufficientStorage.
  static Result<std::unique_ptr<SqliteDatabase>> Open(const std::string& path);
  ~SqliteDatabase();
  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;

  // Runs one or more statements that return no rows.
  Status Execute(std::string_view sql);
  Result<std::unique_ptr<SqliteStatement>> Prepare(std::string_view sql);
  int64_t LastInsertRowId() const;
  sqlite3* raw() { return db_; }

 private:
  explicit SqliteDatabase(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

class SqliteStatement {
 public:
  ~SqliteStatement();
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  // Parameters are 1-based, as in SQLite.
  Status Bind(int index, std::string_view text);
  Status Bind(int index, int64_t value);
  Status Bind(int index, double value);
  Status BindBlob(int index, std::span<const uint8_t> bytes);
  // True while a row is available; false at the end.
  Result<bool> Step();
  // Steps a statement that returns no rows.
  Status Run();
  Status Reset();  // for re-execution with new bindings

  std::string ColumnText(int index) const;
  int64_t ColumnInt(int index) const;
  double ColumnDouble(int index) const;
  std::string ColumnBlob(int index) const;

 private:
  friend class SqliteDatabase;
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Status Check(int rc, std::string_view what) const;
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

}  // namespace kvault
