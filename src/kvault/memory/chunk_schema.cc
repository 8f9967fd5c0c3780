#include "kvault/memory/chunk_schema.h"

#include <memory>
#include <utility>

#include "kvault/base/status_macros.h"

namespace kvault::memory {
namespace {

// rowid of chunks, chunk_text and chunk_vectors = (conversation id << 32) | chunk number.
constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS chunk_conversations ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"
    "  next_chunk INTEGER NOT NULL DEFAULT 0,"    // number of the next chunk to close
    "  first_chunk INTEGER NOT NULL DEFAULT 0,"   // chunks below it were dropped
    "  indexed_end INTEGER NOT NULL DEFAULT 0);"  // end position of the last closed chunk
    "CREATE TABLE IF NOT EXISTS chunks ("
    "  id INTEGER PRIMARY KEY, first_pos INTEGER NOT NULL, n_tokens INTEGER NOT NULL,"
    "  first_turn INTEGER NOT NULL, last_turn INTEGER NOT NULL);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_text USING fts5("
    "  text, content='', tokenize='porter unicode61 remove_diacritics 2');"
    "CREATE TABLE IF NOT EXISTS chunk_vectors (id INTEGER PRIMARY KEY, vector BLOB NOT NULL);"
    // key 'embedder': the Embedder::Identity() that made chunk_vectors.
    "CREATE TABLE IF NOT EXISTS chunk_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

using StatementField = std::unique_ptr<SqliteStatement> ChunkStatements::*;
const std::pair<StatementField, const char*> kStatementSql[] = {
    {&ChunkStatements::find_conversation,
     "SELECT id, next_chunk, first_chunk, indexed_end FROM chunk_conversations WHERE name = ?1"},
    {&ChunkStatements::add_conversation, "INSERT INTO chunk_conversations (name) VALUES (?1)"},
    {&ChunkStatements::save_conversation,
     "UPDATE chunk_conversations SET next_chunk = ?2, first_chunk = ?3, indexed_end = ?4"
     " WHERE id = ?1"},
    {&ChunkStatements::remove_conversation, "DELETE FROM chunk_conversations WHERE id = ?1"},
    {&ChunkStatements::insert_chunk,
     "INSERT INTO chunks (id, first_pos, n_tokens, first_turn, last_turn)"
     " VALUES (?1, ?2, ?3, ?4, ?5)"},
    {&ChunkStatements::insert_text, "INSERT INTO chunk_text (rowid, text) VALUES (?1, ?2)"},
    {&ChunkStatements::delete_text,
     "INSERT INTO chunk_text (chunk_text, rowid, text) VALUES ('delete', ?1, ?2)"},
    {&ChunkStatements::delete_chunk, "DELETE FROM chunks WHERE id = ?1"},
    {&ChunkStatements::chunks_before,
     "SELECT id, first_pos, n_tokens FROM chunks WHERE id BETWEEN ?1 AND ?2 AND first_pos < ?3"
     " ORDER BY id"},
    // Scans back from the newest chunk: the fog's end is usually a window from the end.
    {&ChunkStatements::last_chunk_by,
     "SELECT id FROM chunks WHERE id BETWEEN ?1 AND ?2 AND first_pos + n_tokens <= ?3"
     " ORDER BY id DESC LIMIT 1"},
    {&ChunkStatements::chunk_by_id,
     "SELECT id, first_pos, n_tokens, first_turn, last_turn FROM chunks WHERE id = ?1"},
    {&ChunkStatements::chunks_between,
     "SELECT id, first_pos, n_tokens, first_turn, last_turn FROM chunks WHERE id BETWEEN ?1 AND ?2"
     " ORDER BY id LIMIT ?3"},
    // kvault_bm25 (fts_rank.h) with the phrase weights ?6 and b = 0: chunks are 64 to 128
    // tokens, so their length says little, and reading it is half the cost of ranking a row.
    // Its result is not named "rank": that is FTS5's hidden column (its own bm25()), which an
    // ORDER BY would take. The fog factor of the inner ORDER BY estimates positions from
    // chunk ids (?7: the mean tokens of a chunk) so that only the best ?8 rows are joined
    // with their chunk; the outer one is exact.
    {&ChunkStatements::ranked,
     "SELECT c.id, c.first_pos, c.n_tokens, c.first_turn, c.last_turn,"
     "  r.relevance * exp(-?4 * (?5 - c.first_pos - c.n_tokens)) AS score"
     " FROM (SELECT rowid AS id, kvault_bm25(chunk_text, ?6, 0) AS relevance FROM chunk_text"
     "       WHERE chunk_text MATCH ?1 AND rowid BETWEEN ?2 AND ?3"
     "       ORDER BY relevance * exp(-?4 * ?7 * (?3 - rowid)) DESC LIMIT ?8) r"
     " JOIN chunks c ON c.id = r.id ORDER BY score DESC"},
    {&ChunkStatements::count_matches,
     "SELECT count(*) FROM chunk_text WHERE chunk_text MATCH ?1 AND rowid BETWEEN ?2 AND ?3"},
    {&ChunkStatements::search,
     "SELECT c.id, c.first_pos, c.n_tokens, c.first_turn, c.last_turn,"
     "  -bm25(chunk_text) * exp(-?4 * (?5 - c.first_pos - c.n_tokens)) AS score"
     " FROM chunk_text JOIN chunks c ON c.id = chunk_text.rowid"
     " WHERE chunk_text MATCH ?1 AND chunk_text.rowid BETWEEN ?2 AND ?3"
     " ORDER BY score DESC LIMIT ?6"},
};

}  // namespace

Result<ChunkStatements> ChunkStatements::Prepare(SqliteDatabase* db) {
  KV_RETURN_IF_ERROR(db->Execute(kSchema));
  ChunkStatements statements;
  for (const auto& [field, text] : kStatementSql) {
    KV_ASSIGN_OR_RETURN(statements.*field, db->Prepare(text));
  }
  return statements;
}

}  // namespace kvault::memory
