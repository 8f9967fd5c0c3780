#include "kvault/memory/chunk_index.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "kvault/base/mutex.h"
#include "kvault/base/sqlite.h"
#include "kvault/base/status_macros.h"
#include "kvault/memory/chunk_vectors.h"
#include "kvault/memory/search_terms.h"

namespace kvault::memory {
namespace {

constexpr int64_t kMaxChunkNumber = (int64_t{1} << 32) - 1;
constexpr int64_t kMaxConversationNumber = (int64_t{1} << 31) - 1;
// Each ranking contributes this many candidates to reciprocal rank fusion.
constexpr int32_t kFusionCandidates = 64;

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
    "CREATE TABLE IF NOT EXISTS chunk_vectors (id INTEGER PRIMARY KEY, vector BLOB NOT NULL);";

// Every statement the index runs, prepared once.
struct Statements {
  std::unique_ptr<SqliteStatement> find_conversation, add_conversation, save_conversation,
      remove_conversation, insert_chunk, insert_text, delete_text, delete_chunk, chunks_before,
      last_chunk_by, chunk_by_id, search;
};

using StatementField = std::unique_ptr<SqliteStatement> Statements::*;
const std::pair<StatementField, const char*> kStatementSql[] = {
    {&Statements::find_conversation,
     "SELECT id, next_chunk, first_chunk, indexed_end FROM chunk_conversations WHERE name = ?1"},
    {&Statements::add_conversation, "INSERT INTO chunk_conversations (name) VALUES (?1)"},
    {&Statements::save_conversation,
     "UPDATE chunk_conversations SET next_chunk = ?2, first_chunk = ?3, indexed_end = ?4"
     " WHERE id = ?1"},
    {&Statements::remove_conversation, "DELETE FROM chunk_conversations WHERE id = ?1"},
    {&Statements::insert_chunk,
     "INSERT INTO chunks (id, first_pos, n_tokens, first_turn, last_turn)"
     " VALUES (?1, ?2, ?3, ?4, ?5)"},
    {&Statements::insert_text, "INSERT INTO chunk_text (rowid, text) VALUES (?1, ?2)"},
    {&Statements::delete_text,
     "INSERT INTO chunk_text (chunk_text, rowid, text) VALUES ('delete', ?1, ?2)"},
    {&Statements::delete_chunk, "DELETE FROM chunks WHERE id = ?1"},
    {&Statements::chunks_before,
     "SELECT id, first_pos, n_tokens FROM chunks WHERE id BETWEEN ?1 AND ?2 AND first_pos < ?3"
     " ORDER BY id"},
    // Scans back from the newest chunk: the fog's end is usually a window from the end.
    {&Statements::last_chunk_by,
     "SELECT id FROM chunks WHERE id BETWEEN ?1 AND ?2 AND first_pos + n_tokens <= ?3"
     " ORDER BY id DESC LIMIT 1"},
    {&Statements::chunk_by_id,
     "SELECT id, first_pos, n_tokens, first_turn, last_turn FROM chunks WHERE id = ?1"},
    {&Statements::search,
     "SELECT c.id, c.first_pos, c.n_tokens, c.first_turn, c.last_turn,"
     "  -bm25(chunk_text) * exp(-?4 * (?5 - c.first_pos - c.n_tokens)) AS score"
     " FROM chunk_text JOIN chunks c ON c.id = chunk_text.rowid"
     " WHERE chunk_text MATCH ?1 AND chunk_text.rowid BETWEEN ?2 AND ?3"
     " ORDER BY score DESC LIMIT ?6"},
};

// Resets a statement when the scope ends, so no finished read keeps a snapshot open.
class Use {
 public:
  explicit Use(SqliteStatement* statement) : statement_(statement) {}
  ~Use() { statement_->Reset().IgnoreError(); }
  SqliteStatement* operator->() { return statement_; }
  SqliteStatement& operator*() { return *statement_; }

 private:
  SqliteStatement* statement_;
};

ChunkHit ReadHit(const SqliteStatement& row) {
  ChunkHit hit;
  hit.chunk_id = row.ColumnInt(0);
  hit.first_pos = row.ColumnInt(1);
  hit.n_tokens = static_cast<int32_t>(row.ColumnInt(2));
  hit.first_turn = row.ColumnInt(3);
  hit.last_turn = row.ColumnInt(4);
  return hit;
}

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
  Statements sql KV_GUARDED_BY(mu);
  std::unique_ptr<ChunkVectors> vectors KV_PT_GUARDED_BY(mu);  // with an embedder
  std::map<std::string, std::unique_ptr<ConversationState>, std::less<>> conversations
      KV_GUARDED_BY(mu);

  Result<ConversationState*> Find(std::string_view name, bool create) KV_REQUIRES(mu);
  Status Save(const ConversationState& state) KV_REQUIRES(mu);
  Status Insert(ConversationState& state, const Chunk& chunk) KV_REQUIRES(mu);
  Status Append(ConversationState& state, std::span<const IndexTurn> turns) KV_REQUIRES(mu);
  Result<int64_t> LastChunkEndingBy(const ConversationState& state, int64_t pos) KV_REQUIRES(mu);
  Result<std::vector<ChunkHit>> Bm25(const ConversationState& state, const std::string& match,
                                     int64_t hi, const ChunkSearchParams& params, int32_t n)
      KV_REQUIRES(mu);
  Result<std::vector<ChunkHit>> Dense(const ConversationState& state, std::string_view query,
                                      int64_t hi, const ChunkSearchParams& params) KV_REQUIRES(mu);
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
  Use find(sql.find_conversation.get());
  KV_RETURN_IF_ERROR(find->Bind(1, name));
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
    Use add(sql.add_conversation.get());
    KV_RETURN_IF_ERROR(add->Bind(1, name));
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
  Use save(sql.save_conversation.get());
  KV_RETURN_IF_ERROR(save->Bind(1, state.id));
  KV_RETURN_IF_ERROR(save->Bind(2, state.next_chunk));
  KV_RETURN_IF_ERROR(save->Bind(3, state.first_chunk));
  KV_RETURN_IF_ERROR(save->Bind(4, state.indexed_end));
  return save->Run();
}

Status ChunkIndex::Impl::Insert(ConversationState& state, const Chunk& chunk) {
  if (state.next_chunk > kMaxChunkNumber) return ResourceExhaustedError("memory: chunk ids");
  const int64_t id = state.ChunkId(state.next_chunk);
  const std::string text = options.detokenize(chunk.tokens);
  {
    Use insert(sql.insert_chunk.get());
    KV_RETURN_IF_ERROR(insert->Bind(1, id));
    KV_RETURN_IF_ERROR(insert->Bind(2, chunk.first_pos));
    KV_RETURN_IF_ERROR(insert->Bind(3, static_cast<int64_t>(chunk.tokens.size())));
    KV_RETURN_IF_ERROR(insert->Bind(4, chunk.first_turn));
    KV_RETURN_IF_ERROR(insert->Bind(5, chunk.last_turn));
    KV_RETURN_IF_ERROR(insert->Run());
    Use insert_text(sql.insert_text.get());
    KV_RETURN_IF_ERROR(insert_text->Bind(1, id));
    KV_RETURN_IF_ERROR(insert_text->Bind(2, std::string_view(text)));
    KV_RETURN_IF_ERROR(insert_text->Run());
  }
  if (vectors != nullptr) KV_RETURN_IF_ERROR(vectors->Add(state.id, id, text));
  ++state.next_chunk;
  state.indexed_end = chunk.end_pos();
  return Status::Ok();
}

Status ChunkIndex::Impl::Append(ConversationState& state, std::span<const IndexTurn> turns) {
  for (const IndexTurn& turn : turns) {
    for (const Chunk& chunk : state.chunker.Add(turn)) KV_RETURN_IF_ERROR(Insert(state, chunk));
  }
  return Save(state);
}

Result<int64_t> ChunkIndex::Impl::LastChunkEndingBy(const ConversationState& state, int64_t pos) {
  if (pos >= state.indexed_end) return state.hi();
  Use last(sql.last_chunk_by.get());
  KV_RETURN_IF_ERROR(last->Bind(1, state.lo()));
  KV_RETURN_IF_ERROR(last->Bind(2, state.hi()));
  KV_RETURN_IF_ERROR(last->Bind(3, pos));
  KV_ASSIGN_OR_RETURN(bool row, last->Step());
  return row ? last->ColumnInt(0) : state.lo() - 1;
}

Result<std::vector<ChunkHit>> ChunkIndex::Impl::Bm25(const ConversationState& state,
                                                     const std::string& match, int64_t hi,
                                                     const ChunkSearchParams& params, int32_t n) {
  const double decay = params.fog_alpha > 0 && params.cache_size > 0
                           ? params.fog_alpha / static_cast<double>(params.cache_size)
                           : 0.0;
  Use search(sql.search.get());
  KV_RETURN_IF_ERROR(search->Bind(1, std::string_view(match)));
  KV_RETURN_IF_ERROR(search->Bind(2, state.lo()));
  KV_RETURN_IF_ERROR(search->Bind(3, hi));
  KV_RETURN_IF_ERROR(search->Bind(4, decay));
  KV_RETURN_IF_ERROR(search->Bind(5, state.chunker.next_pos()));
  KV_RETURN_IF_ERROR(search->Bind(6, static_cast<int64_t>(n)));
  std::vector<ChunkHit> hits;
  while (true) {
    KV_ASSIGN_OR_RETURN(bool row, search->Step());
    if (!row) break;
    ChunkHit hit = ReadHit(*search);
    hit.score = search->ColumnDouble(5);
    hits.push_back(hit);
  }
  return hits;
}

Result<ChunkHit> ChunkIndex::Impl::ChunkById(int64_t id) {
  Use chunk(sql.chunk_by_id.get());
  KV_RETURN_IF_ERROR(chunk->Bind(1, id));
  KV_ASSIGN_OR_RETURN(bool row, chunk->Step());
  if (!row) return InternalError("memory: vector for missing chunk " + std::to_string(id));
  return ReadHit(*chunk);
}

Result<std::vector<ChunkHit>> ChunkIndex::Impl::Dense(const ConversationState& state,
                                                      std::string_view query, int64_t hi,
                                                      const ChunkSearchParams& params) {
  KV_ASSIGN_OR_RETURN(std::vector<VectorHit> found,
                      vectors->Search(state.id, query, state.lo(), hi, kFusionCandidates));
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
    Use select(sql.chunks_before.get());
    KV_RETURN_IF_ERROR(select->Bind(1, state.lo()));
    KV_RETURN_IF_ERROR(select->Bind(2, state.hi()));
    KV_RETURN_IF_ERROR(select->Bind(3, pos));
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
      Use remove(sql.delete_text.get());
      KV_RETURN_IF_ERROR(remove->Bind(1, chunk.id));
      KV_RETURN_IF_ERROR(remove->Bind(2, std::string_view(options.detokenize(*tokens))));
      KV_RETURN_IF_ERROR(remove->Run());
    } else {
      ++result.n_orphaned;
    }
    Use remove(sql.delete_chunk.get());
    KV_RETURN_IF_ERROR(remove->Bind(1, chunk.id));
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
  KV_RETURN_IF_ERROR(impl->db->Execute(kSchema));
  for (const auto& [field, text] : kStatementSql) {
    KV_ASSIGN_OR_RETURN(impl->sql.*field, impl->db->Prepare(text));
  }
  if (impl->options.embedder != nullptr) {
    KV_ASSIGN_OR_RETURN(impl->vectors,
                        ChunkVectors::Create(impl->db.get(), impl->options.embedder));
  }
  return std::unique_ptr<ChunkIndex>(new ChunkIndex(std::move(impl)));
}

Status ChunkIndex::AppendTurns(std::string_view conversation, std::span<const IndexTurn> turns) {
  MutexLock lock(&impl_->mu);
  KV_ASSIGN_OR_RETURN(ConversationState * state, impl_->Find(conversation, /*create=*/true));
  KV_RETURN_IF_ERROR(impl_->db->Execute("BEGIN"));
  const Status status = impl_->Finish(impl_->Append(*state, turns));
  // The rollback undid the rows; reload the state from what was committed.
  if (!status.ok()) impl_->Forget(conversation, state->id);
  return status;
}

Result<int64_t> ChunkIndex::IndexedEnd(std::string_view conversation) {
  MutexLock lock(&impl_->mu);
  KV_ASSIGN_OR_RETURN(ConversationState * state, impl_->Find(conversation, /*create=*/false));
  return state == nullptr ? 0 : state->chunker.next_pos();
}

Result<std::vector<ChunkHit>> ChunkIndex::Search(std::string_view conversation,
                                                 std::string_view query,
                                                 const ChunkSearchParams& params) {
  const SearchQuery terms = ParseSearchQuery(query);
  MutexLock lock(&impl_->mu);
  KV_ASSIGN_OR_RETURN(ConversationState * state, impl_->Find(conversation, /*create=*/false));
  if (state == nullptr || params.k <= 0 || (terms.empty() && impl_->vectors == nullptr)) {
    return std::vector<ChunkHit>();
  }
  KV_ASSIGN_OR_RETURN(const int64_t hi, impl_->LastChunkEndingBy(*state, params.end_pos_limit));
  if (hi < state->lo()) return std::vector<ChunkHit>();
  const std::string match = MatchExpression(terms);
  if (impl_->vectors == nullptr) return impl_->Bm25(*state, match, hi, params, params.k);
  std::vector<ChunkHit> rankings[2];
  if (!match.empty()) {
    KV_ASSIGN_OR_RETURN(rankings[0], impl_->Bm25(*state, match, hi, params, kFusionCandidates));
  }
  KV_ASSIGN_OR_RETURN(rankings[1], impl_->Dense(*state, query, hi, params));
  return FuseRankings(rankings, params.k);
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
    Use remove(impl_->sql.remove_conversation.get());
    status = remove->Bind(1, state->id);
    if (status.ok()) status = remove->Run();
  }
  status = impl_->Finish(status);
  impl_->Forget(conversation, state->id);
  KV_RETURN_IF_ERROR(status);
  return result;
}

Result<ChunkIndexStats> ChunkIndex::Stats() {
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
      scalar("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'chunk_text%'").value_or(-1);
  stats.vectors = impl_->vectors == nullptr ? 0 : impl_->vectors->loaded_vectors();
  return stats;
}

}  // namespace kvault::memory
