#include "kvault/memory/chunk_index.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <unordered_map>

#include "kvault/base/mutex.h"
#include "kvault/base/sqlite.h"
#include "kvault/base/status_macros.h"
#include "kvault/base/time_text.h"
#include "kvault/memory/chunk_schema.h"
#include "kvault/memory/chunk_vectors.h"
#include "kvault/memory/fts_rank.h"
#include "kvault/memory/hit_merge.h"
#include "kvault/memory/rank_plan.h"
#include "kvault/memory/search_terms.h"
#include "kvault/memory/thesaurus.h"
#include "kvault/memory/time_query.h"

namespace kvault::memory {
namespace {

constexpr int64_t kMaxChunkNumber = (int64_t{1} << 32) - 1;
constexpr int64_t kMaxConversationNumber = (int64_t{1} << 31) - 1;
// Each ranking contributes this many candidates to reciprocal rank fusion.
constexpr int32_t kFusionCandidates = 64;
// Candidates each lexical step ranks before they are merged.
constexpr int32_t kLexicalCandidates = 50;
// The thesaurus words' BM25 counts this much of the query's own words'.
constexpr double kExpansionWeight = 0.5;
// Hits of the first step whose names seed the second.
constexpr size_t kSeedHits = 3;
// Phrase counts are reused while within 10% of the count from this many chunks on.
constexpr int64_t kApproximateCountsFrom = 10000;
constexpr size_t kMaxPhraseCounts = 100000;
// Rows one ranking pass may select (see "Cost" in the header): ~25 ms of kvault_bm25.
constexpr double kMaxRankedRows = 25000;
// The score of a chunk found only by being said in the period a question names: the default
// recall threshold (--recall-min-score 1.0), so such chunks are recalled unless it is raised.
constexpr double kPeriodScore = 1.0;

ChunkHit ReadHit(const SqliteStatement& row) {
  ChunkHit hit;
  hit.chunk_id = row.ColumnInt(0);
  hit.first_pos = row.ColumnInt(1);
  hit.n_tokens = static_cast<int32_t>(row.ColumnInt(2));
  hit.first_turn = row.ColumnInt(3);
  hit.last_turn = row.ColumnInt(4);
  return hit;
}

// Every row of a search statement: a chunk (ReadHit's columns) and its score (column 5).
Result<std::vector<ChunkHit>> ReadScoredHits(SqliteStatement& statement) {
  std::vector<ChunkHit> hits;
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) break;
    ChunkHit hit = ReadHit(statement);
    hit.score = statement.ColumnDouble(5);
    hits.push_back(hit);
  }
  return hits;
}

bool IsBlank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// A closed chunk whose embedding is still to be computed, outside the mutex, and stored.
struct PendingEmbedding {
  int64_t conversation_id;
  int64_t chunk_id;
  std::string text;
};

struct ConversationState;

// Chunk ids up to `hi` of `state`'s conversation are searchable.
struct SearchRange {
  ConversationState* state = nullptr;
  int64_t hi = 0;
};

struct ConversationState {
  ConversationState(int64_t id_, int32_t chunk_tokens, int64_t indexed_end)
      : id(id_), chunker(chunk_tokens, indexed_end) {}
  int64_t id;
  int64_t next_chunk = 0;
  int64_t first_chunk = 0;
  int64_t indexed_end = 0;  // end of the last closed chunk
  Chunker chunker;

  int64_t ChunkId(int64_t number) const { return (id << 32) | number; }
  int64_t lo() const { return ChunkId(first_chunk); }
  int64_t hi() const { return ChunkId(next_chunk) - 1; }
  double FogFactor(const ChunkSearchParams& params, int64_t end_pos) const {
    if (params.fog_alpha <= 0 || params.cache_size <= 0) return 1.0;
    const auto age = static_cast<double>(chunker.next_pos() - end_pos);
    return std::exp(-params.fog_alpha * age / static_cast<double>(params.cache_size));
  }
};

}  // namespace

struct ChunkIndex::Impl {
  ChunkIndexOptions options;
  Mutex mu;
  std::unique_ptr<SqliteDatabase> db KV_PT_GUARDED_BY(mu);
  ChunkStatements sql KV_GUARDED_BY(mu);
  const Thesaurus* thesaurus = nullptr;  // null: no query expansion; set at Open
  std::unique_ptr<ChunkVectors> vectors KV_PT_GUARDED_BY(mu);  // with an embedder
  int64_t embedding_failures KV_GUARDED_BY(mu) = 0;
  std::map<std::string, std::unique_ptr<ConversationState>, std::less<>> conversations
      KV_GUARDED_BY(mu);
  // Rows of a conversation holding a phrase, by conversation id and phrase (rank_plan.h
  // needs them for every search; counting a common word of a long history takes ms).
  struct PhraseCount {
    int64_t rows = 0;
    int64_t first_chunk = 0;  // the conversation's chunk numbers when counted
    int64_t next_chunk = 0;
  };
  std::unordered_map<std::string, PhraseCount> phrase_counts KV_GUARDED_BY(mu);

  Result<ConversationState*> Find(std::string_view name, bool create) KV_REQUIRES(mu);
  Status Save(const ConversationState& state) KV_REQUIRES(mu);
  Status Insert(ConversationState& state, const Chunk& chunk,
                std::vector<PendingEmbedding>* pending) KV_REQUIRES(mu);
  Status Append(ConversationState& state, std::span<const IndexTurn> turns,
                std::vector<PendingEmbedding>* pending) KV_REQUIRES(mu);
  // Embeds the chunks (without the mutex) and stores their vectors, skipping chunks dropped
  // meanwhile. Best effort: a chunk whose vector fails is counted in embedding_failures and
  // found by BM25 only; its text is indexed and journaled like any other.
  void EmbedAndStore(std::span<const PendingEmbedding> pending) KV_EXCLUDES(mu);
  Result<int64_t> LastChunkEndingBy(const ConversationState& state, int64_t pos) KV_REQUIRES(mu);
  // The conversation and its last chunk ending by `end_pos_limit`; state null when it has
  // nothing to search.
  Result<SearchRange> Searchable(std::string_view name, int64_t end_pos_limit) KV_REQUIRES(mu);
  // Chunk ids [lo, hi] of `state`'s conversation are searched.
  Result<std::vector<ChunkHit>> Bm25(const ConversationState& state, const std::string& match,
                                     int64_t lo, int64_t hi, const ChunkSearchParams& params,
                                     int32_t n) KV_REQUIRES(mu);
  // The plan's best n rows of chunk ids [lo, hi] by kvault_bm25 with fog demotion.
  Result<std::vector<ChunkHit>> Ranked(const ConversationState& state, const RankPlan& plan,
                                       int64_t lo, int64_t hi, const ChunkSearchParams& params,
                                       int32_t n) KV_REQUIRES(mu);
  // PlanRanking over the conversation's chunks, counts cached in phrase_counts.
  Result<RankPlan> Plan(const ConversationState& state, std::span<const RankedPhrase> scored,
                        std::span<const RankedPhrase> required) KV_REQUIRES(mu);
  Result<int64_t> PhraseRows(const ConversationState& state, const std::string& phrase)
      KV_REQUIRES(mu);
  // Ranked over the query's words and phrases and the thesaurus's words, then the
  // name-seeded second step (see the header).
  Result<std::vector<ChunkHit>> Lexical(const ConversationState& state, const SearchQuery& query,
                                        int64_t lo, int64_t hi, const ChunkSearchParams& params,
                                        int32_t n) KV_REQUIRES(mu);
  Result<std::vector<ChunkHit>> Dense(const ConversationState& state, std::span<const float> query,
                                      int64_t lo, int64_t hi, const ChunkSearchParams& params)
      KV_REQUIRES(mu);
  // The ranking of chunks [lo, hi]: lexical, fused with dense when there are vectors.
  Result<std::vector<ChunkHit>> Rank(const ConversationState& state, const SearchQuery& query,
                                     std::span<const float> query_vector, int64_t lo, int64_t hi,
                                     const ChunkSearchParams& params) KV_REQUIRES(mu);
  // The chunk ids [lo, hi] of the chunks said in the period the query names, if it names
  // one and the store has turns of that time (time_query.h); nullopt otherwise.
  // (`words`: the words that named the period.)
  Result<std::optional<std::pair<int64_t, int64_t>>> PeriodRange(const ConversationState& state,
                                                                 std::string_view query, int64_t hi,
                                                                 const ChunkSearchParams& params,
                                                                 std::vector<std::string>* words)
      KV_REQUIRES(mu);
  // The first n chunks of [lo, hi] in position order, with `score` (a question that names a
  // period and nothing else).
  Result<std::vector<ChunkHit>> ChunksBetween(int64_t lo, int64_t hi, int32_t n, double score)
      KV_REQUIRES(mu);
  Result<ChunkHit> ChunkById(int64_t id) KV_REQUIRES(mu);
  Result<ChunkDropResult> Drop(ConversationState& state, int64_t pos, const TokenStore* store)
      KV_REQUIRES(mu);
  // Ends the transaction a caller began: commits if `status` is OK, rolls back otherwise.
  Status Finish(Status status) KV_REQUIRES(mu);
  // Drops what is cached about a conversation; the next use reloads what was committed.
  void Forget(std::string_view name, int64_t id) KV_REQUIRES(mu);
};

void ChunkIndex::Impl::Forget(std::string_view name, int64_t id) {
  if (vectors != nullptr) vectors->ForgetConversation(id);
  auto it = conversations.find(name);
  if (it != conversations.end()) conversations.erase(it);
}

Status ChunkIndex::Impl::Finish(Status status) {
  if (status.ok()) status = db->Execute("COMMIT");
  if (!status.ok()) db->Execute("ROLLBACK").IgnoreError();
  return status;
}

Result<ConversationState*> ChunkIndex::Impl::Find(std::string_view name, bool create) {
  auto it = conversations.find(name);
  if (it != conversations.end()) return it->second.get();
  StatementScope find(sql.find_conversation.get());
  KV_RETURN_IF_ERROR(BindAll(find, name));
  KV_ASSIGN_OR_RETURN(bool row, find->Step());
  std::unique_ptr<ConversationState> state;
  if (row) {
    state = std::make_unique<ConversationState>(find->ColumnInt(0), options.chunk_tokens,
                                                find->ColumnInt(3));
    state->next_chunk = find->ColumnInt(1);
    state->first_chunk = find->ColumnInt(2);
    state->indexed_end = find->ColumnInt(3);
  } else {
    if (!create) return static_cast<ConversationState*>(nullptr);
    StatementScope add(sql.add_conversation.get());
    KV_RETURN_IF_ERROR(BindAll(add, name));
    KV_RETURN_IF_ERROR(add->Run());
    const int64_t id = db->LastInsertRowId();
    if (id > kMaxConversationNumber) return ResourceExhaustedError("memory: conversation ids");
    state = std::make_unique<ConversationState>(id, options.chunk_tokens, 0);
  }
  ConversationState* raw = state.get();
  conversations.emplace(std::string(name), std::move(state));
  return raw;
}

Status ChunkIndex::Impl::Save(const ConversationState& state) {
  StatementScope save(sql.save_conversation.get());
  KV_RETURN_IF_ERROR(
      BindAll(save, state.id, state.next_chunk, state.first_chunk, state.indexed_end));
  return save->Run();
}

Status ChunkIndex::Impl::Insert(ConversationState& state, const Chunk& chunk,
                                std::vector<PendingEmbedding>* pending) {
  if (state.next_chunk > kMaxChunkNumber) return ResourceExhaustedError("memory: chunk ids");
  const int64_t id = state.ChunkId(state.next_chunk);
  const std::string text = options.detokenize(chunk.tokens);
  {
    StatementScope insert(sql.insert_chunk.get());
    KV_RETURN_IF_ERROR(BindAll(insert, id, chunk.first_pos,
                               static_cast<int64_t>(chunk.tokens.size()), chunk.first_turn,
                               chunk.last_turn));
    KV_RETURN_IF_ERROR(insert->Run());
    StatementScope insert_text(sql.insert_text.get());
    KV_RETURN_IF_ERROR(BindAll(insert_text, id, std::string_view(text)));
    KV_RETURN_IF_ERROR(insert_text->Run());
  }
  // A chunk of special tokens only has no text: nothing to embed, no query can be near it.
  if (vectors != nullptr && !IsBlank(text)) pending->push_back({state.id, id, text});
  ++state.next_chunk;
  state.indexed_end = chunk.end_pos();
  return Status::Ok();
}

Status ChunkIndex::Impl::Append(ConversationState& state, std::span<const IndexTurn> turns,
                                std::vector<PendingEmbedding>* pending) {
  for (const IndexTurn& turn : turns) {
    for (const Chunk& chunk : state.chunker.Add(turn)) {
      KV_RETURN_IF_ERROR(Insert(state, chunk, pending));
    }
  }
  return Save(state);
}

void ChunkIndex::Impl::EmbedAndStore(std::span<const PendingEmbedding> pending) {
  std::vector<std::pair<const PendingEmbedding*, std::vector<float>>> embedded;
  embedded.reserve(pending.size());
  int64_t failed = 0;
  for (const PendingEmbedding& chunk : pending) {
    Result<std::vector<float>> vector = options.embedder->Embed(chunk.text);
    if (vector.ok()) {
      embedded.emplace_back(&chunk, std::move(vector).value());
    } else {
      ++failed;
    }
  }
  MutexLock lock(&mu);
  embedding_failures += failed;
  if (embedded.empty()) return;
  Status status = db->Execute("BEGIN");
  for (size_t i = 0; status.ok() && i < embedded.size(); ++i) {
    const auto& [chunk, vector] = embedded[i];
    // Dropped meanwhile (DropBefore, RemoveConversation): its vector would be an orphan.
    if (!ChunkById(chunk->chunk_id).ok()) continue;
    const Status added = vectors->Add(chunk->conversation_id, chunk->chunk_id, vector);
    if (added.code() == StatusCode::kInvalidArgument) {
      ++embedding_failures;  // a zero vector; rejected before any write
    } else {
      status = added;
    }
  }
  if (Finish(status).ok()) return;
  // Rolled back: the in-memory vector indexes may hold vectors the table does not.
  embedding_failures += static_cast<int64_t>(embedded.size());
  for (const auto& [chunk, vector] : embedded) vectors->ForgetConversation(chunk->conversation_id);
}

Result<int64_t> ChunkIndex::Impl::LastChunkEndingBy(const ConversationState& state, int64_t pos) {
  if (pos >= state.indexed_end) return state.hi();
  // A conversation's chunk ids are contiguous (chunks drop from the front only) and ordered
  // by position, so rowid lookups find the answer: galloping down from the newest chunk
  // (the fog's end is usually a window from the end: a few lookups), then a binary search
  // of the bracket found (~40 lookups for a period months back in a 100M-token history,
  // where the scan below would read every chunk after `pos`).
  int64_t below = state.lo() - 1;  // the last id known to end by pos
  int64_t above = state.hi() + 1;  // the first id known to end after it
  bool contiguous = true;
  auto ends_by = [&](int64_t id) KV_REQUIRES(mu) {
    Result<ChunkHit> chunk = ChunkById(id);
    contiguous = contiguous && chunk.ok();
    return chunk.ok() && chunk->end_pos() <= pos;
  };
  for (int64_t step = 1; contiguous && above - step > below; step *= 2) {
    const int64_t probe = above - step;
    if (ends_by(probe)) {
      below = probe;
      break;
    }
    above = probe;
  }
  while (contiguous && above - below > 1) {
    const int64_t mid = below + (above - below) / 2;
    (ends_by(mid) ? below : above) = mid;
  }
  if (contiguous) return below;
  StatementScope last(sql.last_chunk_by.get());
  KV_RETURN_IF_ERROR(BindAll(last, state.lo(), state.hi(), pos));
  KV_ASSIGN_OR_RETURN(bool row, last->Step());
  return row ? last->ColumnInt(0) : state.lo() - 1;
}

Result<SearchRange> ChunkIndex::Impl::Searchable(std::string_view name, int64_t end_pos_limit) {
  KV_ASSIGN_OR_RETURN(ConversationState * state, Find(name, /*create=*/false));
  if (state == nullptr) return SearchRange();
  KV_ASSIGN_OR_RETURN(const int64_t hi, LastChunkEndingBy(*state, end_pos_limit));
  if (hi < state->lo()) return SearchRange();
  return SearchRange{state, hi};
}

Result<std::vector<ChunkHit>> ChunkIndex::Impl::Bm25(const ConversationState& state,
                                                     const std::string& match, int64_t lo,
                                                     int64_t hi, const ChunkSearchParams& params,
                                                     int32_t n) {
  const double decay = params.fog_alpha > 0 && params.cache_size > 0
                           ? params.fog_alpha / static_cast<double>(params.cache_size)
                           : 0.0;
  StatementScope search(sql.search.get());
  KV_RETURN_IF_ERROR(BindAll(search, std::string_view(match), lo, hi, decay,
                             state.chunker.next_pos(), static_cast<int64_t>(n)));
  return ReadScoredHits(*search);
}

Result<std::vector<ChunkHit>> ChunkIndex::Impl::Lexical(const ConversationState& state,
                                                        const SearchQuery& query, int64_t lo,
                                                        int64_t hi, const ChunkSearchParams& params,
                                                        int32_t n) {
  const int32_t candidates = std::max(n, kLexicalCandidates);
  std::vector<RankedPhrase> own;
  for (const std::string& term : query.terms) own.push_back({term, 1.0});
  for (const std::string& phrase : query.phrases) own.push_back({phrase, 1.0});
  std::vector<RankedPhrase> scored = own;
  if (thesaurus != nullptr && params.expand) {
    for (std::string& word : ExpansionWords(query, *thesaurus)) {
      scored.push_back({std::move(word), kExpansionWeight});
    }
  }
  KV_ASSIGN_OR_RETURN(const RankPlan plan, Plan(state, scored, {}));
  KV_ASSIGN_OR_RETURN(std::vector<ChunkHit> hits, Ranked(state, plan, lo, hi, params, candidates));
  if (params.store != nullptr && !hits.empty()) {
    std::vector<RankedPhrase> names;
    for (size_t i = 0; i < std::min(hits.size(), kSeedHits); ++i) {
      Result<std::vector<int32_t>> tokens =
          params.store->Tokens(hits[i].first_pos, hits[i].n_tokens);
      if (!tokens.ok()) continue;  // dropped from the store: no seeds from it
      for (std::string& name : SeedNames(options.detokenize(*tokens), query, thesaurus)) {
        if (std::none_of(names.begin(), names.end(),
                         [&](const RankedPhrase& p) { return p.text == name; })) {
          names.push_back({std::move(name), 1.0});
        }
      }
    }
    if (!names.empty()) {
      // A name AND a word of the question.
      KV_ASSIGN_OR_RETURN(const RankPlan second_plan, Plan(state, own, names));
      KV_ASSIGN_OR_RETURN(const std::vector<ChunkHit> second,
                          Ranked(state, second_plan, lo, hi, params, candidates));
      hits = Interleave(hits, second, static_cast<size_t>(candidates));
    }
  }
  if (hits.size() > static_cast<size_t>(n)) hits.resize(static_cast<size_t>(n));
  return hits;
}

Result<std::vector<ChunkHit>> ChunkIndex::Impl::Ranked(const ConversationState& state,
                                                       const RankPlan& plan, int64_t lo, int64_t hi,
                                                       const ChunkSearchParams& params, int32_t n) {
  if (plan.match.empty() || lo > hi) return std::vector<ChunkHit>();
  // Over budget: the newest part of the range whose rows the budget covers (see "Cost").
  const int64_t n_chunks = std::max<int64_t>(1, state.next_chunk - state.first_chunk);
  const double expected = static_cast<double>(plan.selected_rows) *
                          static_cast<double>(hi - lo + 1) / static_cast<double>(n_chunks);
  if (expected > kMaxRankedRows) {
    const auto kept =
        static_cast<int64_t>(static_cast<double>(hi - lo + 1) * kMaxRankedRows / expected);
    lo = std::max(lo, hi - std::max<int64_t>(kept, 1) + 1);
  }
  const double decay = params.fog_alpha > 0 && params.cache_size > 0
                           ? params.fog_alpha / static_cast<double>(params.cache_size)
                           : 0.0;
  const std::vector<uint8_t> weights = EncodeRankWeights(plan.weights);
  StatementScope ranked(sql.ranked.get());
  KV_RETURN_IF_ERROR(
      BindAll(ranked, std::string_view(plan.match), lo, hi, decay, state.chunker.next_pos()));
  KV_RETURN_IF_ERROR(ranked->BindBlob(6, weights));
  // Chunks are 64 to 128 tokens: their mean so far estimates a chunk id's position.
  const double chunk_tokens = state.next_chunk > 0 ? static_cast<double>(state.indexed_end) /
                                                         static_cast<double>(state.next_chunk)
                                                   : options.chunk_tokens;
  KV_RETURN_IF_ERROR(ranked->Bind(7, chunk_tokens));
  KV_RETURN_IF_ERROR(ranked->Bind(8, static_cast<int64_t>(n)));
  return ReadScoredHits(*ranked);
}

Result<RankPlan> ChunkIndex::Impl::Plan(const ConversationState& state,
                                        std::span<const RankedPhrase> scored,
                                        std::span<const RankedPhrase> required) {
  RankPlanParams plan_params;
  plan_params.n_rows = state.next_chunk - state.first_chunk;
  return PlanRanking(
      scored, required,
      [&](const std::string& phrase) KV_REQUIRES(mu) { return PhraseRows(state, phrase); },
      plan_params);
}

Result<int64_t> ChunkIndex::Impl::PhraseRows(const ConversationState& state,
                                             const std::string& phrase) {
  std::string key = std::to_string(state.id) + '\0' + phrase;
  auto it = phrase_counts.find(key);
  // Exact while the conversation is small (a count is cheap); once it is long, reused until a
  // tenth of its chunks changed (a count is the cost this cache saves; IDF hardly moves). A
  // count of 0 is reused only while no chunk changed: the word may be said next turn.
  if (it != phrase_counts.end()) {
    const PhraseCount& counted = it->second;
    const int64_t changed =
        (state.next_chunk - counted.next_chunk) + (state.first_chunk - counted.first_chunk);
    const int64_t n_counted = counted.next_chunk - counted.first_chunk;
    if (changed == 0 ||
        (counted.rows > 0 && n_counted >= kApproximateCountsFrom && changed * 10 <= n_counted)) {
      return counted.rows;
    }
  }
  StatementScope count(sql.count_matches.get());
  KV_RETURN_IF_ERROR(BindAll(count, std::string_view(phrase), state.lo(), state.hi()));
  KV_ASSIGN_OR_RETURN(bool row, count->Step());
  const int64_t rows = row ? count->ColumnInt(0) : 0;
  if (phrase_counts.size() >= kMaxPhraseCounts) phrase_counts.clear();
  phrase_counts[std::move(key)] = {rows, state.first_chunk, state.next_chunk};
  return rows;
}

Result<std::vector<ChunkHit>> ChunkIndex::Impl::Rank(const ConversationState& state,
                                                     const SearchQuery& query,
                                                     std::span<const float> query_vector,
                                                     int64_t lo, int64_t hi,
                                                     const ChunkSearchParams& params) {
  if (lo > hi) return std::vector<ChunkHit>();
  if (vectors == nullptr) {
    if (query.empty()) return std::vector<ChunkHit>();
    return Lexical(state, query, lo, hi, params, params.k);
  }
  std::vector<ChunkHit> rankings[2];
  if (!query.empty()) {
    KV_ASSIGN_OR_RETURN(rankings[0], Lexical(state, query, lo, hi, params, kFusionCandidates));
  }
  if (!query_vector.empty()) {
    KV_ASSIGN_OR_RETURN(rankings[1], Dense(state, query_vector, lo, hi, params));
  }
  return FuseRankings(rankings, params.k);
}

Result<std::optional<std::pair<int64_t, int64_t>>> ChunkIndex::Impl::PeriodRange(
    const ConversationState& state, std::string_view query, int64_t hi,
    const ChunkSearchParams& params, std::vector<std::string>* words) {
  using Range = std::optional<std::pair<int64_t, int64_t>>;
  const TokenStore* store = params.store;
  if (store == nullptr || store->turns().empty()) return Range();
  // Relative dates are the question's own: the time it is asked, by default the time of the
  // store's last turn (the question, in recall).
  const int64_t said = params.now != 0 ? params.now : store->turns().back().time;
  const std::optional<TimeRange> period = FindTimeRange(query, said != 0 ? said : UnixNow());
  if (!period) return Range();
  *words = period->words;
  const auto [first_pos, end_pos] = store->PositionsSaidIn(period->begin, period->end);
  if (first_pos >= end_pos) return Range();
  // From the first chunk ending after the period's first token to the one holding its last.
  KV_ASSIGN_OR_RETURN(const int64_t before, LastChunkEndingBy(state, first_pos));
  KV_ASSIGN_OR_RETURN(const int64_t last, LastChunkEndingBy(state, end_pos - 1));
  return Range(std::pair{std::max(before + 1, state.lo()), std::min(last + 1, hi)});
}

Result<std::vector<ChunkHit>> ChunkIndex::Impl::ChunksBetween(int64_t lo, int64_t hi, int32_t n,
                                                              double score) {
  std::vector<ChunkHit> hits;
  if (lo > hi) return hits;
  StatementScope chunks(sql.chunks_between.get());
  KV_RETURN_IF_ERROR(BindAll(chunks, lo, hi, static_cast<int64_t>(n)));
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, chunks->Step());
    if (!row) break;
    hits.push_back(ReadHit(*chunks));
    hits.back().score = score;
  }
  return hits;
}

Result<ChunkHit> ChunkIndex::Impl::ChunkById(int64_t id) {
  StatementScope chunk(sql.chunk_by_id.get());
  KV_RETURN_IF_ERROR(BindAll(chunk, id));
  KV_ASSIGN_OR_RETURN(bool row, chunk->Step());
  if (!row) return InternalError("memory: vector for missing chunk " + std::to_string(id));
  return ReadHit(*chunk);
}

Result<std::vector<ChunkHit>> ChunkIndex::Impl::Dense(const ConversationState& state,
                                                      std::span<const float> query, int64_t lo,
                                                      int64_t hi, const ChunkSearchParams& params) {
  KV_ASSIGN_OR_RETURN(std::vector<VectorHit> found,
                      vectors->Search(state.id, query, lo, hi, kFusionCandidates));
  std::vector<ChunkHit> hits;
  for (const VectorHit& vector_hit : found) {
    KV_ASSIGN_OR_RETURN(ChunkHit hit, ChunkById(vector_hit.label));
    hit.score = vector_hit.similarity * state.FogFactor(params, hit.end_pos());
    hits.push_back(hit);
  }
  std::stable_sort(hits.begin(), hits.end(),
                   [](const ChunkHit& a, const ChunkHit& b) { return a.score > b.score; });
  return hits;
}

Result<ChunkDropResult> ChunkIndex::Impl::Drop(ConversationState& state, int64_t pos,
                                               const TokenStore* store) {
  struct Doomed {
    int64_t id, first_pos, n_tokens;
  };
  std::vector<Doomed> doomed;
  {
    StatementScope select(sql.chunks_before.get());
    KV_RETURN_IF_ERROR(BindAll(select, state.lo(), state.hi(), pos));
    while (true) {
      KV_ASSIGN_OR_RETURN(bool row, select->Step());
      if (!row) break;
      doomed.push_back({select->ColumnInt(0), select->ColumnInt(1), select->ColumnInt(2)});
    }
  }
  ChunkDropResult result;
  for (const Doomed& chunk : doomed) {
    Result<std::vector<int32_t>> tokens = store == nullptr
                                              ? Result<std::vector<int32_t>>(NotFoundError(""))
                                              : store->Tokens(chunk.first_pos, chunk.n_tokens);
    if (tokens.ok()) {
      StatementScope remove(sql.delete_text.get());
      KV_RETURN_IF_ERROR(BindAll(remove, chunk.id, std::string_view(options.detokenize(*tokens))));
      KV_RETURN_IF_ERROR(remove->Run());
    } else {
      ++result.n_orphaned;
    }
    StatementScope remove(sql.delete_chunk.get());
    KV_RETURN_IF_ERROR(BindAll(remove, chunk.id));
    KV_RETURN_IF_ERROR(remove->Run());
    if (vectors != nullptr) KV_RETURN_IF_ERROR(vectors->Remove(state.id, chunk.id));
    state.first_chunk = (chunk.id & kMaxChunkNumber) + 1;
    ++result.n_chunks;
  }
  state.chunker.DropBefore(pos);
  KV_RETURN_IF_ERROR(Save(state));
  return result;
}

ChunkIndex::ChunkIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChunkIndex::~ChunkIndex() = default;

Result<std::unique_ptr<ChunkIndex>> ChunkIndex::Open(ChunkIndexOptions options) {
  if (!options.detokenize) return InvalidArgumentError("memory: chunk index needs a detokenizer");
  if (options.chunk_tokens < 2) {
    return InvalidArgumentError("memory: chunks need at least 2 tokens, got " +
                                std::to_string(options.chunk_tokens));
  }
  auto impl = std::make_unique<Impl>();
  MutexLock lock(&impl->mu);
  impl->options = std::move(options);
  KV_ASSIGN_OR_RETURN(impl->db, SqliteDatabase::Open(impl->options.path));
  KV_RETURN_IF_ERROR(RegisterRankFunction(impl->db->raw()));
  KV_ASSIGN_OR_RETURN(impl->sql, ChunkStatements::Prepare(impl->db.get()));
  if (impl->options.use_thesaurus) impl->thesaurus = Thesaurus::Default();
  if (impl->options.embedder != nullptr) {
    KV_ASSIGN_OR_RETURN(impl->vectors,
                        ChunkVectors::Create(impl->db.get(), impl->options.embedder->Identity()));
  }
  return std::unique_ptr<ChunkIndex>(new ChunkIndex(std::move(impl)));
}

Status ChunkIndex::AppendTurns(std::string_view conversation, std::span<const IndexTurn> turns) {
  std::vector<PendingEmbedding> pending;
  {
    MutexLock lock(&impl_->mu);
    KV_ASSIGN_OR_RETURN(ConversationState * state, impl_->Find(conversation, /*create=*/true));
    KV_RETURN_IF_ERROR(impl_->db->Execute("BEGIN"));
    const Status status = impl_->Finish(impl_->Append(*state, turns, &pending));
    if (!status.ok()) {
      // The rollback undid the rows; reload the state from what was committed.
      impl_->Forget(conversation, state->id);
      return status;
    }
  }
  if (!pending.empty()) impl_->EmbedAndStore(pending);
  return Status::Ok();
}

Result<int64_t> ChunkIndex::IndexedEnd(std::string_view conversation) {
  MutexLock lock(&impl_->mu);
  KV_ASSIGN_OR_RETURN(ConversationState * state, impl_->Find(conversation, /*create=*/false));
  return state == nullptr ? 0 : state->chunker.next_pos();
}

Result<int64_t> ChunkIndex::CountChunks(std::string_view conversation) {
  MutexLock lock(&impl_->mu);
  KV_ASSIGN_OR_RETURN(ConversationState * state, impl_->Find(conversation, /*create=*/false));
  return state == nullptr ? 0 : state->next_chunk - state->first_chunk;
}

Result<std::vector<ChunkHit>> ChunkIndex::Search(std::string_view conversation,
                                                 std::string_view query,
                                                 const ChunkSearchParams& params) {
  if (params.plain_bm25) {
    const std::string match = PlainMatchExpression(query);
    if (params.k <= 0 || match.empty()) return std::vector<ChunkHit>();
    MutexLock lock(&impl_->mu);
    KV_ASSIGN_OR_RETURN(const SearchRange range,
                        impl_->Searchable(conversation, params.end_pos_limit));
    if (range.state == nullptr) return std::vector<ChunkHit>();
    ChunkSearchParams plain = params;
    plain.fog_alpha = 0;
    return impl_->Bm25(*range.state, match, range.state->lo(), range.hi, plain, params.k);
  }
  const SearchQuery parsed = ParseSearchQuery(query);
  // The embedder is fixed at Open.
  const bool dense = impl_->options.embedder != nullptr && !IsBlank(query);
  // A question with no content word may still name a period ("what did we do yesterday?").
  const bool may_name_period = params.store != nullptr;
  if (params.k <= 0 || (parsed.empty() && !dense && !may_name_period)) {
    return std::vector<ChunkHit>();
  }
  std::vector<float> query_vector;
  if (dense) {
    // Embedded without the mutex, and only when there is something to search: most requests
    // of a young conversation have no closed chunk yet.
    {
      MutexLock lock(&impl_->mu);
      KV_ASSIGN_OR_RETURN(const SearchRange range,
                          impl_->Searchable(conversation, params.end_pos_limit));
      if (range.state == nullptr) return std::vector<ChunkHit>();
    }
    KV_ASSIGN_OR_RETURN(query_vector, impl_->options.embedder->Embed(query));
  }
  MutexLock lock(&impl_->mu);
  KV_ASSIGN_OR_RETURN(const SearchRange range,
                      impl_->Searchable(conversation, params.end_pos_limit));
  if (range.state == nullptr) return std::vector<ChunkHit>();
  const ConversationState& state = *range.state;
  std::vector<std::string> period_words;
  KV_ASSIGN_OR_RETURN(const auto period,
                      impl_->PeriodRange(state, query, range.hi, params, &period_words));
  // The words naming a period are left out of the query: "May 2023" would rank every chunk
  // that writes a date of that month.
  const SearchQuery words = period ? WithoutWords(parsed, period_words) : parsed;
  KV_ASSIGN_OR_RETURN(std::vector<ChunkHit> hits,
                      impl_->Rank(state, words, query_vector, state.lo(), range.hi, params));
  if (!period) return hits;
  // The question names a period: the chunks said then come first, ranked the same way (or,
  // where nothing of the period matches the rest of the question, in order, at the period
  // score: "what did we do yesterday?").
  KV_ASSIGN_OR_RETURN(
      std::vector<ChunkHit> in_period,
      impl_->Rank(state, words, query_vector, period->first, period->second, params));
  if (in_period.empty()) {
    KV_ASSIGN_OR_RETURN(
        in_period, impl_->ChunksBetween(period->first, period->second, params.k, kPeriodScore));
  }
  return PreferFirst(in_period, hits, static_cast<size_t>(params.k));
}

Result<ChunkDropResult> ChunkIndex::DropBefore(std::string_view conversation, int64_t pos,
                                               const TokenStore& store) {
  MutexLock lock(&impl_->mu);
  KV_ASSIGN_OR_RETURN(ConversationState * state, impl_->Find(conversation, /*create=*/false));
  if (state == nullptr) return ChunkDropResult();
  KV_RETURN_IF_ERROR(impl_->db->Execute("BEGIN"));
  Result<ChunkDropResult> result = impl_->Drop(*state, pos, &store);
  const Status status = impl_->Finish(result.status());
  if (!status.ok()) {
    impl_->Forget(conversation, state->id);
    return status;
  }
  return result;
}

Result<ChunkDropResult> ChunkIndex::RemoveConversation(std::string_view conversation,
                                                       const TokenStore* store) {
  MutexLock lock(&impl_->mu);
  KV_ASSIGN_OR_RETURN(ConversationState * state, impl_->Find(conversation, /*create=*/false));
  if (state == nullptr) return ChunkDropResult();
  KV_RETURN_IF_ERROR(impl_->db->Execute("BEGIN"));
  Result<ChunkDropResult> result = impl_->Drop(*state, std::numeric_limits<int64_t>::max(), store);
  Status status = result.status();
  if (status.ok()) {
    StatementScope remove(impl_->sql.remove_conversation.get());
    status = remove->Bind(1, state->id);
    if (status.ok()) status = remove->Run();
  }
  status = impl_->Finish(status);
  impl_->Forget(conversation, state->id);
  KV_RETURN_IF_ERROR(status);
  return result;
}

Result<ChunkIndexStats> ChunkIndex::Stats(bool with_fts_bytes) {
  MutexLock lock(&impl_->mu);
  ChunkIndexStats stats;
  auto scalar = [&](const char* query) KV_REQUIRES(impl_->mu) -> Result<int64_t> {
    KV_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStatement> statement, impl_->db->Prepare(query));
    KV_ASSIGN_OR_RETURN(bool row, statement->Step());
    return row ? statement->ColumnInt(0) : 0;
  };
  KV_ASSIGN_OR_RETURN(stats.n_conversations, scalar("SELECT COUNT(*) FROM chunk_conversations"));
  KV_ASSIGN_OR_RETURN(stats.n_chunks, scalar("SELECT COUNT(*) FROM chunks"));
  KV_ASSIGN_OR_RETURN(const int64_t pages, scalar("PRAGMA page_count"));
  KV_ASSIGN_OR_RETURN(const int64_t free_pages, scalar("PRAGMA freelist_count"));
  KV_ASSIGN_OR_RETURN(const int64_t page_size, scalar("PRAGMA page_size"));
  stats.db_bytes = (pages - free_pages) * page_size;
  stats.fts_bytes =
      with_fts_bytes
          ? scalar("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'chunk_text%'").value_or(-1)
          : -1;
  stats.vectors = impl_->vectors == nullptr ? 0 : impl_->vectors->loaded_vectors();
  stats.vectors_dropped = impl_->vectors == nullptr ? 0 : impl_->vectors->dropped_at_open();
  stats.embedding_failures = impl_->embedding_failures;
  return stats;
}

}  // namespace kvault::memory
