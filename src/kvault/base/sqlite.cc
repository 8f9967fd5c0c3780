#include "kvault/base/sqlite.h"

#include <cstdio>

#include <sqlite3.h>

#include "kvault/base/file.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/base/storage_health.h"

namespace kvault {
namespace {

Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string message = "sqlite: " + std::string(what) + ": ";
  message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) return CorruptionError(message);
  // A full disk, a read-only file or folder, a file that cannot be created: the folder's
  // fault, not the data's (base/storage_health.h).
  const int primary = rc & 0xff;
  if (primary == SQLITE_FULL || primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN) {
    return IOError(message).WithDetail(ErrorDetail::kInsufficientStorage);
  }
  if (primary == SQLITE_IOERR) return IOError(message);
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return UnavailableError(message);
  if (rc == SQLITE_ERROR) return InvalidArgumentError(message);
  return InternalError(message);
}

Result<sqlite3*> OpenHandle(const std::string& name, int flags) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(name.c_str(), &db, flags | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status status = SqliteError(db, rc, "open " + name);
    sqlite3_close(db);
    return status;
  }
  sqlite3_busy_timeout(db, 5000);
  return db;
}

// A file: URI for `path` (RFC 3986: what would end or escape the path is percent-encoded).
std::string FileUri(const std::string& path) {
  std::string uri = "file:";
  for (const char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      char escaped[4];
      std::snprintf(escaped, sizeof(escaped), "%%%02X", static_cast<unsigned char>(c));
      uri += escaped;
    } else {
      uri += c;
    }
  }
  return uri;
}

}  // namespace

Result<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(const std::string& path) {
  Result<sqlite3*> db = OpenHandle(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  Status opened = db.status();
  if (db.ok()) {
    auto database = std::unique_ptr<SqliteDatabase>(new SqliteDatabase(*db));
    if (path == ":memory:") return database;
    opened = database->Execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
    if (opened.ok()) return database;
  }
  // A read-only disk or folder (WAL needs its -shm file beside the database): what is there
  // stays readable, opened as immutable (no locks, no -shm); every write then fails as a
  // storage failure, which the caller reports (base/storage_health.h).
  if (!IsStorageFailure(opened) || !PathExists(path)) return opened;
  KV_ASSIGN_OR_RETURN(sqlite3 * read_only, OpenHandle(FileUri(path) + "?immutable=1",
                                                      SQLITE_OPEN_READONLY | SQLITE_OPEN_URI));
  KV_LOG(kWarning) << "sqlite: " << path << " cannot be written (" << opened.message()
                   << "); opened read-only";
  return std::unique_ptr<SqliteDatabase>(new SqliteDatabase(read_only));
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
