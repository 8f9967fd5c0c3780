#include "kvault/base/sqlite.h"

#include <sqlite3.h>

namespace kvault {
namespace {

Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string message = "sqlite: " + std::string(what) + ": ";
  message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) return CorruptionError(message);
  if (rc == SQLITE_FULL || rc == SQLITE_IOERR) return IOError(message);
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return UnavailableError(message);
  if (rc == SQLITE_ERROR) return InvalidArgumentError(message);
  return InternalError(message);
}

}  // namespace

Result<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status status = SqliteError(db, rc, "open " + path);
    sqlite3_close(db);
    return status;
  }
  sqlite3_busy_timeout(db, 5000);
  auto database = std::unique_ptr<SqliteDatabase>(new SqliteDatabase(db));
  if (path != ":memory:") {
    Status wal = database->Execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
    if (!wal.ok()) return wal;
  }
  return database;
}

SqliteDatabase::~SqliteDatabase() { sqlite3_close(db_); }

Status SqliteDatabase::Execute(std::string_view sql) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string message = error != nullptr ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  return SqliteError(nullptr, rc, "exec: " + message);
}

Result<std::unique_ptr<SqliteStatement>> SqliteDatabase::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, "prepare");
  return std::unique_ptr<SqliteStatement>(new SqliteStatement(db_, stmt));
}

int64_t SqliteDatabase::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

Status SqliteStatement::Check(int rc, std::string_view what) const {
  return rc == SQLITE_OK ? Status::Ok() : SqliteError(db_, rc, what);
}

Status SqliteStatement::Bind(int index, std::string_view text) {
  return Check(
      sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT),
      "bind text");
}

Status SqliteStatement::Bind(int index, int64_t value) {
  return Check(sqlite3_bind_int64(stmt_, index, value), "bind int");
}

Status SqliteStatement::Bind(int index, double value) {
  return Check(sqlite3_bind_double(stmt_, index, value), "bind double");
}

Status SqliteStatement::BindBlob(int index, std::span<const uint8_t> bytes) {
  return Check(sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()),
                                 SQLITE_TRANSIENT),
               "bind blob");
}

Result<bool> SqliteStatement::Step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_, rc, "step");
}

Status SqliteStatement::Run() {
  Result<bool> row = Step();
  if (!row.ok()) return row.status();
  return Status::Ok();
}

Status SqliteStatement::Reset() {
  sqlite3_clear_bindings(stmt_);
  return Check(sqlite3_reset(stmt_), "reset");
}

std::string SqliteStatement::ColumnText(int index) const {
  const auto* text = sqlite3_column_text(stmt_, index);
  const int n = sqlite3_column_bytes(stmt_, index);
  return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text), n);
}

int64_t SqliteStatement::ColumnInt(int index) const { return sqlite3_column_int64(stmt_, index); }

double SqliteStatement::ColumnDouble(int index) const {
  return sqlite3_column_double(stmt_, index);
}

std::string SqliteStatement::ColumnBlob(int index) const {
  const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, index));
  const int n = sqlite3_column_bytes(stmt_, index);
  return data == nullptr ? std::string() : std::string(data, n);
}

}  // namespace kvault
