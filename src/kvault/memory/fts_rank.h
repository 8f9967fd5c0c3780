// memory/fts_rank.h: the chunk index's relevance function inside SQLite, an FTS5 auxiliary
// function registered on its connection:
//
//   kvault_bm25(chunk_text, weights, b)  =  sum over the match expression's phrases i of
//       weights[i] * tf_i * (k1 + 1) / (tf_i + k1 * (1 - b + b * length / average length))
//
// with tf_i the hits of phrase i in the row (phrases numbered left to right in the
// expression), k1 = 1.2 as FTS5's own bm25() (whose b is 0.75; b = 0 skips reading the row's
// length, half the cost of ranking a row), and `weights` a blob of doubles in
// this process's byte order (EncodeRankWeights), one per phrase (missing ones are 0). The caller
// folds each phrase's IDF and its query weight into weights[i]; a weight of 0 marks a phrase that
// is in the expression only to select rows, and costs nothing per row.
//
// Why not FTS5's bm25(): it computes every phrase's IDF with a scan of its whole doclist on
// every query (13 ms for a word in 400k chunks of a 100M-token history) and weights phrases
// only per column, so a phrase written twice in the expression (to select rows and to score
// them) would count twice. See rank_plan.h for how the expression is built.
//
// Thread-safety: as the SQLite connection it is registered on.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvault/base/result.h"

struct sqlite3;

namespace kvault::memory {

// Registers kvault_bm25 on `db`. Internal error if the library has no FTS5.
Status RegisterRankFunction(sqlite3* db);

// The weights argument for kvault_bm25.
std::vector<uint8_t> EncodeRankWeights(std::span<const double> weights);

}  // namespace kvault::memory
