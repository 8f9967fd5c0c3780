// memory/hit_merge.h: how the chunk index combines the rankings of its lexical search steps
// (chunk_index.h, "Relevance"), kept apart so that each rule is tested on its own. Scores stay
// in BM25 units, so --recall-min-score means the same with and without these steps.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "kvault/memory/chunk_index.h"

namespace kvault::memory {

// `main` with `weight` x the score of each chunk in `extra` added (a chunk only in `extra`
// enters with that alone), best first. The thesaurus words' ranking is `extra`.
std::vector<ChunkHit> AddWeighted(std::span<const ChunkHit> main, std::span<const ChunkHit> extra,
                                  double weight);

// Up to n hits: first[0], then alternately the best not yet taken of `second` and of `first`.
// A hit taken from `second` reports at most the score of the hit before it, so scores do not
// increase down the list. Used for the second retrieval step: its hits (chunks sharing a name
// with the first results) get every other place from the second one on, so evidence spread
// over turns enters the top few without pushing the first step's best hit down.
std::vector<ChunkHit> Interleave(std::span<const ChunkHit> first, std::span<const ChunkHit> second,
                                 size_t n);

// Up to n hits: those of `preferred` in order, then those of `rest` not among them. A
// preferred hit reports at least the score of the best of the rest (so the rest keep their
// own scores: a weak match in the period does not push strong ones below a relevance
// threshold), and no hit more than the one before it. Chunks of the period a question names
// (time_query.h) are `preferred`.
std::vector<ChunkHit> PreferFirst(std::span<const ChunkHit> preferred,
                                  std::span<const ChunkHit> rest, size_t n);

}  // namespace kvault::memory
