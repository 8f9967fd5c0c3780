#include "kvault/memory/fts_rank.h"

#include <algorithm>
#include <cstring>
#include <string>

#include <sqlite3.h>

namespace kvault::memory {
namespace {

constexpr double kK1 = 1.2;

// The weight of each phrase, from the blob argument. Read for every row, not cached with
// xSetAuxdata: FTS5 keeps aux data with the cursor, and a prepared statement reset and run
// with new weights reuses it (the first query's weights would rank every later one).
void ReadWeights(sqlite3_value* blob, int n_phrases, std::vector<double>* weights) {
  weights->assign(static_cast<size_t>(std::max(n_phrases, 0)), 0.0);
  const auto* bytes = static_cast<const unsigned char*>(sqlite3_value_blob(blob));
  const size_t given = static_cast<size_t>(sqlite3_value_bytes(blob)) / sizeof(double);
  for (size_t i = 0; i < given && i < weights->size(); ++i) {
    std::memcpy(&(*weights)[i], bytes + i * sizeof(double), sizeof(double));
  }
}

void Rank(const Fts5ExtensionApi* api, Fts5Context* fts, sqlite3_context* context, int n_values,
          sqlite3_value** values) {
  if (n_values != 2) {
    sqlite3_result_error(context, "kvault_bm25: expected (table, weights, b)", -1);
    return;
  }
  const double b = sqlite3_value_double(values[1]);
  thread_local std::vector<double> weights;
  ReadWeights(values[0], api->xPhraseCount(fts), &weights);
  sqlite3_int64 rows = 0, tokens = 0;
  int length = 0;
  int rc = api->xRowCount(fts, &rows);
  if (rc == SQLITE_OK) rc = api->xColumnTotalSize(fts, -1, &tokens);
  // The row's length is a lookup in FTS5's docsize table: half the cost of ranking a row.
  if (rc == SQLITE_OK && b != 0) rc = api->xColumnSize(fts, -1, &length);
  if (rc != SQLITE_OK) {
    sqlite3_result_error_code(context, rc);
    return;
  }
  const double average_length = rows > 0 && tokens > 0 ? static_cast<double>(tokens) / rows : 1.0;
  const double norm = kK1 * (1 - b + b * length / average_length);
  double score = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] == 0) continue;
    Fts5PhraseIter it;
    int column = 0, offset = 0, tf = 0;
    rc = api->xPhraseFirst(fts, static_cast<int>(i), &it, &column, &offset);
    if (rc != SQLITE_OK) {
      sqlite3_result_error_code(context, rc);
      return;
    }
    for (; column >= 0; api->xPhraseNext(fts, &it, &column, &offset)) ++tf;
    if (tf > 0) score += weights[i] * tf * (kK1 + 1) / (tf + norm);
  }
  sqlite3_result_double(context, score);
}

}  // namespace

Status RegisterRankFunction(sqlite3* db) {
  fts5_api* api = nullptr;
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &statement, nullptr) != SQLITE_OK) {
    return InternalError("memory: SQLite has no FTS5: " + std::string(sqlite3_errmsg(db)));
  }
  sqlite3_bind_pointer(statement, 1, &api, "fts5_api_ptr", nullptr);
  sqlite3_step(statement);
  sqlite3_finalize(statement);
  if (api == nullptr) return InternalError("memory: SQLite has no FTS5 API");
  if (api->xCreateFunction(api, "kvault_bm25", nullptr, Rank, nullptr) != SQLITE_OK) {
    return InternalError("memory: could not register kvault_bm25");
  }
  return Status::Ok();
}

std::vector<uint8_t> EncodeRankWeights(std::span<const double> weights) {
  std::vector<uint8_t> bytes(weights.size() * sizeof(double));
  if (!weights.empty()) std::memcpy(bytes.data(), weights.data(), bytes.size());
  return bytes;
}

}  // namespace kvault::memory
