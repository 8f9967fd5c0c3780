// memory/chunk_index.h: the searchable index of conversations' histories, cut into chunks of
// about 128 tokens (see chunker.h), kept in one SQLite database. Text relevance is BM25 from
// SQLite FTS5 (porter stemming); with an Embedder, chunk embeddings are also searched with
// hnswlib and the two rankings are fused by reciprocal rank fusion. The conversation layer
// appends turns as it stores them, searches for pre- and mid-generation recall and for
// POST /v1/conversations/search, and removes chunks when its token store drops turns.
//
// Design notes:
// - No text is stored. The FTS5 table is contentless (content=''): it holds terms and
//   positions only, about 2 bytes per token; a hit's text is re-derived from the caller's
//   TokenStore. SQLite 3.40 (Debian 12) deletes a row from a contentless table only when given
//   the row's original text again, so `detokenize` must be deterministic, and dropping chunks
//   needs a TokenStore that still holds their tokens: call DropBefore with
//   TokenStore::BeginPosAfterAppend() before the append that drops them. Chunks whose tokens
//   are gone anyway are still excluded from every search; only their FTS space stays.
// - rowid = (conversation number << 32) | chunk number. Chunk numbers grow with position, so
//   one conversation's chunks, and those of them that end before a position, are one rowid
//   range: searches pass it to FTS5 (rowid BETWEEN) and walk no other conversation's rows.
// - The open (last, partial) chunk is not searchable until it closes, and only closed chunks
//   are persisted. Its tokens are the newest ones, inside any window's clear zone. After a
//   restart IndexedEnd() says from which position the caller must feed turns again.
// - Fog demotion: score = relevance * exp(-fog_alpha * age / cache_size), where age = tokens
//   between the chunk's end and the end of the conversation's last appended turn; 0 = off.
//   At alpha 0.5 a chunk one whole cache size old keeps exp(-0.5) = 61% of its relevance.
// - Relevance, lexical: BM25 (fts_rank.h's kvault_bm25, FTS5's formula) over the query's
//   words and phrases (search_terms.h), higher is better, unbounded, growing with the number
//   of query words matched; the words WordNet relates to them (thesaurus.h: "car" also finds
//   "automobile", "doctor" finds "physician") count at half weight in the same pass. IDF is
//   over the conversation's own chunks. Rows are selected as rank_plan.h says, so that a
//   search costs what its selective words cost, not what "days" costs in a 100M-token history.
//   Then, given the conversation's TokenStore, a second step for evidence spread over turns:
//   the names in the best 3 hits' text (SeedNames: "my sister" -> the turn that says
//   "Ottoline adopted a ferret" -> "Ottoline") are searched together with the query (a name
//   AND a query word), and those hits take every other place from the second on
//   (Interleave), scores capped so the list stays sorted. With an embedder the lexical
//   ranking is fused with the dense one: the sum of 1 / (60 + rank) over both (at most
//   2/61), so relevance thresholds depend on the mode.
// - Time: given the store, a question that names a period ("in May", "last week",
//   time_query.h, resolved against the time of the store's last turn) is also searched among
//   the chunks said in that period (TokenStore::PositionsSaidIn), without the words that named
//   it; those hits come first (PreferFirst), and where none matches, the period's first
//   chunks do, at score 1.0 ("what did we talk about yesterday?").
// - Cost: a ranking pass whose plan selects more than 25,000 rows of the searched range
//   (rank_plan.h's selected_rows, scaled to the range) searches only the newest part of the
//   range that holds that many: a question made only of words in most of a very long
//   history's chunks ("what about my grandmother?") gets their latest mentions instead of
//   ranking all of them, and a search stays under ~100 ms at 100M tokens. Selective words
//   never hit the budget alone below ~2M chunks (each is in at most 2% of them).
// - The fog factor is computed inside the query with SQLite's exp() (math functions, built
//   into Debian's libsqlite3 and the default amalgamation since 3.35), first from chunk ids
//   (positions estimated from the mean chunk length) to pick the best rows, then exactly.
// WART: a chunk that straddles a drop position is removed whole, so up to chunk_tokens - 1
// retained tokens just after it are no longer searchable.
//
// Thread-safety: every method may be called from any thread; one mutex serializes them.
// Embeddings (of chunks and of queries) are computed outside it: an embedding model takes
// milliseconds to seconds per text, and a long ingestion must not stall other searches.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/memory/chunker.h"
#include "kvault/memory/token_store.h"

namespace kvault::memory {

struct ChunkHit {
  int64_t chunk_id = 0;  // (conversation number << 32) | chunk number
  double score = 0;      // higher is better, fog demotion applied
  int64_t first_pos = 0;
  int32_t n_tokens = 0;
  int64_t first_turn = 0;  // turns the chunk covers, inclusive
  int64_t last_turn = 0;

  int64_t end_pos() const { return first_pos + n_tokens; }
};

struct ChunkSearchParams {
  int32_t k = 10;  // results wanted
  // Only chunks ending at or before this position: the fog zone's end.
  int64_t end_pos_limit = std::numeric_limits<int64_t>::max();
  double fog_alpha = 0;    // recency demotion; 0 = off
  int64_t cache_size = 0;  // tokens; the age scale of fog_alpha (<= 0 turns it off)
  // The baseline of `kvault bench recall`: FTS5's BM25 over every word of the query
  // (PlainMatchExpression), nothing else: no phrases, no fog demotion, no dense search.
  bool plain_bm25 = false;
  // Words the thesaurus relates to the query's (ChunkIndexOptions::use_thesaurus) are searched
  // too, at a lower weight. false: the query's own words only.
  bool expand = true;
  // The conversation's tokens, to read the first results' text: with it, a second step seeded
  // by the names in the best hits (see "Relevance"). Null: one step. Read during the call only.
  const TokenStore* store = nullptr;
  // When the question is asked (Unix seconds), for the period it names ("last week"); 0:
  // the time of the store's last turn (the question itself, in recall).
  int64_t now = 0;
};

// Computes a text embedding (an embedding model run by llama.cpp in the server).
class Embedder {
 public:
  virtual ~Embedder() = default;
  // May be called from several threads at once (the index does not serialize it).
  virtual Result<std::vector<float>> Embed(std::string_view text) = 0;
  // What makes the vectors (model, pooling, dimensions): vectors of different identities are
  // not comparable, so the index drops stored vectors made under another identity.
  virtual std::string Identity() const = 0;
};

// The text of some tokens, special tokens left out. Must be deterministic (see above).
using Detokenizer = std::function<std::string(std::span<const int32_t> tokens)>;

struct ChunkIndexOptions {
  std::string path;  // SQLite file, or ":memory:"
  Detokenizer detokenize;
  Embedder* embedder = nullptr;  // optional; not owned, must outlive the index
  int32_t chunk_tokens = 128;
  // Expand queries with WordNet (Thesaurus::Default(); off when its files are absent).
  bool use_thesaurus = true;
};

struct ChunkDropResult {
  int64_t n_chunks = 0;    // chunks removed
  int64_t n_orphaned = 0;  // of those, chunks whose tokens were gone: FTS space not reclaimed
};

struct ChunkIndexStats {
  int64_t n_conversations = 0;
  int64_t n_chunks = 0;   // closed chunks, all conversations
  int64_t db_bytes = 0;   // used pages of the database
  int64_t fts_bytes = 0;  // pages of the FTS5 tables (-1 if SQLite lacks dbstat)
  int64_t vectors = 0;    // embeddings held in memory
  // Stored embeddings dropped when the index was opened because another embedder (another
  // --embedding-model) made them; their chunks are found by BM25 only.
  int64_t vectors_dropped = 0;
  // Chunks indexed without a vector since the index was opened (the embedder failed).
  int64_t embedding_failures = 0;
};

class ChunkIndex {
 public:
  // Opens or creates the index. InvalidArgument without a detokenizer or with chunks of
  // fewer than 2 tokens.
  static Result<std::unique_ptr<ChunkIndex>> Open(ChunkIndexOptions options);
  ~ChunkIndex();
  ChunkIndex(const ChunkIndex&) = delete;
  ChunkIndex& operator=(const ChunkIndex&) = delete;

  // Indexes turns of `conversation` (created on first use), in one transaction. Turns must
  // come in position order; tokens before IndexedEnd() are skipped, so feeding a turn twice
  // is harmless. On error nothing of this call is kept and the open chunk is forgotten: feed
  // again from IndexedEnd(). With an embedder, the closed chunks are then embedded and their
  // vectors stored in a second transaction, best effort: a chunk whose embedding fails is
  // found by BM25 only (ChunkIndexStats::embedding_failures).
  Status AppendTurns(std::string_view conversation, std::span<const IndexTurn> turns);
  // The position from which turns still have to be fed (0 for an unknown conversation).
  Result<int64_t> IndexedEnd(std::string_view conversation);
  // Closed chunks of the conversation that are searchable (0 for an unknown one).
  Result<int64_t> CountChunks(std::string_view conversation);

  // The best chunks of `conversation` for the content words of `query` (search_terms.h),
  // best first. Empty for an unknown conversation or a query without content words.
  Result<std::vector<ChunkHit>> Search(std::string_view conversation, std::string_view query,
                                       const ChunkSearchParams& params);

  // Removes every chunk that starts before `pos` and forgets the open chunk if it does too.
  // `store` is the conversation's token store, read for the chunks' text.
  Result<ChunkDropResult> DropBefore(std::string_view conversation, int64_t pos,
                                     const TokenStore& store);
  // Removes the conversation and all its chunks; OK if it is unknown. `store` may be null
  // (chunks then stay orphaned in the FTS index, never found again).
  Result<ChunkDropResult> RemoveConversation(std::string_view conversation,
                                             const TokenStore* store);

  // Counts and sizes. `fts_bytes` needs a scan of every FTS page (dbstat): only when
  // `with_fts_bytes` (benchmarks), not for frequent health checks (-1 then).
  Result<ChunkIndexStats> Stats(bool with_fts_bytes = true);

 private:
  struct Impl;
  explicit ChunkIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::memory
