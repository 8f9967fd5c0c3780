// memory/rank_plan.h: the FTS5 expression and phrase weights of one lexical search of the
// chunk index, chosen so that its cost does not grow with the commonest words of a long
// history.
//
// The cost of an FTS5 query is per row it matches: every matching row is ranked. An OR of the
// question's words matches every chunk holding any of them, and in a 100M-token history a
// word like "days" is in 400k of 950k chunks (a search took 630 ms at p99). So rows are
// selected by the phrases that are selective (in at most max(min_selective, selective_share
// x rows) chunks) and by pairs of the others (both words in one chunk), and ranked by every
// phrase: the expression is
//
//   (selective1 OR selective2 OR (common1 AND common2) ...) AND (every phrase ORed)
//
// with weight 0 on the selecting part (fts_rank.h) and IDF x query weight on the rest, so a
// selected row scores exactly its BM25 over the whole query. A chunk left out holds none of
// the selective phrases and one common word at most: its BM25 is below any chunk with two.
// Phrases in more than common_share of the rows do not even pair ("days" and "club" select
// no fewer rows than "club"), pairs never in one chunk are left out, and if nothing
// selects, the rarest phrase does. A history small
// enough that every phrase is selective gets the plain OR.
//
// IDF is FTS5's: ln((N - df + 0.5) / (df + 0.5)), at least 1e-6, over the rows searched.
//
// Thread-safety: pure function (`frequency` is called from the caller's thread).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kvault/base/result.h"

namespace kvault::memory {

struct RankedPhrase {
  std::string text;     // one word or several ("book club"), lowercased, without quotes
  double weight = 1.0;  // its share of the score (the thesaurus's words 0.5)
};

struct RankPlanParams {
  int64_t n_rows = 0;  // chunks searched
  int64_t min_selective = 2000;
  double selective_share = 0.02;
  double common_share = 0.25;
  size_t max_pairs = 15;
};

struct RankPlan {
  std::string match;            // FTS5 expression; empty: no row can match
  std::vector<double> weights;  // for kvault_bm25, per phrase of `match` from the left
  size_t n_selecting = 0;       // phrases of the selecting part (0: the plain OR)
  // The rows the selecting part holds, at most (each clause's count, summed): what ranking
  // the plan costs. The chunk index searches only the newest part of a range whose share of
  // this exceeds its budget (chunk_index.h, "Cost").
  int64_t selected_rows = 0;
};

// Rows matching an FTS5 expression among those searched: a quoted phrase ("\"book club\"")
// or a pair of them joined by AND.
using PhraseFrequency = std::function<Result<int64_t>(const std::string& expression)>;

// The plan for `scored` (every phrase that counts; repeated texts add their weights). With
// `required`, rows must also hold one of those phrases (the second search step's names),
// which count in the score as well, and they alone select. Errors of `frequency` propagate.
Result<RankPlan> PlanRanking(std::span<const RankedPhrase> scored,
                             std::span<const RankedPhrase> required,
                             const PhraseFrequency& frequency, const RankPlanParams& params);

}  // namespace kvault::memory
