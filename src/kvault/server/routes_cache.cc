// The KV state engine's routes and its metrics:
//
//   GET  /v1/cache/stats
//   GET  /v1/cache/tree?limit=N
//   POST /v1/cache/clear  {} | {"conversation_id"} | {"session"}   drops cached KV, never history
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "kvault/base/json.h"
#include "kvault/base/status_macros.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/server/http_route.h"
#include "kvault/server/metrics.h"
#include "kvault/server/openai_schema.h"
#include "kvault/server/routes.h"

namespace kvault::server {
namespace {

Json TierJson(const store::TierStats& tier) {
  return {{"blocks", tier.blocks},
          {"bytes", tier.bytes},
          {"budget_bytes", tier.budget_bytes},
          {"hits", tier.hits},
          {"misses", tier.misses},
          {"evictions", tier.evictions},
          {"read_bytes", tier.read_bytes},
          {"read_seconds", tier.read_seconds},
          {"read_bandwidth_bytes_per_second", tier.read_bandwidth},
          {"write_bytes", tier.write_bytes},
          {"write_seconds", tier.write_seconds},
          {"write_bandwidth_bytes_per_second", tier.write_bandwidth}};
}

std::string TierNames(uint8_t tiers) {
  std::string names;
  if (tiers & kv::kTierRam) names = "ram";
  if (tiers & kv::kTierDisk) names += names.empty() ? "disk" : "+disk";
  if (tiers & kv::kTierRemote) names += names.empty() ? "remote" : "+remote";
  return names;
}

// Requests whose prompt prefix was reused, from any source (kv.cold counts the misses).
int64_t PrefixHits(const conversation::KvCacheStats& kv) {
  return kv.own + kv.shared + kv.restored_ram + kv.restored_disk + kv.restored_remote;
}

// The tiers that exist: RAM, and disk when configured.
std::vector<std::pair<std::string, const store::TierStats*>> Tiers(
    const store::BlockStoreStats& s) {
  std::vector<std::pair<std::string, const store::TierStats*>> tiers = {{"ram", &s.ram}};
  if (s.has_disk) tiers.emplace_back("disk", &s.disk);
  if (s.has_remote) tiers.emplace_back("remote", &s.remote);
  return tiers;
}

// A short, one-line text of a block's tokens.
std::string Preview(const engine::Tokenizer& tokenizer, const std::vector<llama_token>& tokens) {
  std::string text = tokenizer.Detokenize(tokens, /*render_special=*/true);
  std::replace(text.begin(), text.end(), '\n', ' ');
  if (text.size() > 160) {
    text.resize(engine::CompleteUtf8Prefix(std::string_view(text).substr(0, 160)));
    text += "...";
  }
  return text;
}

// POST /v1/cache/clear: the whole scope's cache, one conversation's, or one session's KV.
Status ClearCache(ServerState& state, RouteContext& context) {
  Json body = Json::object();
  if (!context.request.body.empty()) {
    KV_ASSIGN_OR_RETURN(body, RequestJson(context.request));
  }
  if (!body.is_object()) return InvalidArgumentError("the body must be a JSON object");
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (it.key() != "conversation_id" && it.key() != "session") {
      return InvalidArgumentError("unknown field '" + it.key() +
                                  "': expected 'conversation_id' or 'session'");
    }
  }
  KV_ASSIGN_OR_RETURN(std::optional<std::string> conversation_id,
                      OptionalString(body, "conversation_id", "conversation_id"));
  KV_ASSIGN_OR_RETURN(std::optional<std::string> session,
                      OptionalString(body, "session", "session"));
  if (conversation_id && session) {
    return InvalidArgumentError("give 'conversation_id' or 'session', not both");
  }
  Json reply = {{"object", "cache.clear"}};
  store::Removed removed;
  if (session) {
    KV_ASSIGN_OR_RETURN(removed, state.manager->sessions().DropKv(context.scope, *session));
    reply["session"] = *session;
  } else {
    KV_ASSIGN_OR_RETURN(conversation::ConversationManager::CacheCleared cleared,
                        state.manager->ClearCache(context.scope, conversation_id.value_or("")));
    removed = cleared.stored;
    reply["conversation_id"] = conversation_id ? Json(*conversation_id) : Json(nullptr);
    reply["conversations"] = cleared.conversations;
    reply["device_sequences"] = cleared.device_sequences;
  }
  reply["cleared_blocks"] = removed.blocks;
  reply["cleared_bytes"] = removed.bytes;
  // Blocks a saved session still pins stay; clear the session (or delete it) to drop them.
  reply["pinned_blocks_kept"] = removed.pinned;
  SendJson(context.response, reply);
  return Status::Ok();
}

}  // namespace

namespace {

// Recalled history as KV (conversation/recall_kv.h): what was kept, and what recalls did.
Json RecallKvStatsJson(const conversation::RecallKvStats& stats) {
  Json json = RecallKvJson(stats.totals);
  json.erase("refused");
  json["mode"] = stats.mode;
  json["blend_fraction"] = stats.blend_fraction;
  json["encoding"] = stats.encoding;
  json["requests"] = stats.requests;
  json["refusals"] = stats.refusals;
  json["kept_spans"] = stats.kept_spans;
  json["kept_tokens"] = stats.kept_tokens;
  json["kept_bytes"] = stats.kept_bytes;
  json["kept_bytes_per_token"] =
      stats.kept_tokens > 0 ? static_cast<double>(stats.kept_bytes) / stats.kept_tokens : 0.0;
  json["keep_errors"] = stats.keep_errors;
  json["keep_seconds"] = stats.keep_seconds;
  return json;
}

}  // namespace

Json CacheStatsJson(const ServerState& state) {
  const store::BlockStoreStats s = state.block_store->stats();
  const conversation::KvCacheStats kv = state.manager->kv_stats();
  const store::BlockStoreParams& params = state.block_store->params();
  Json tiers = Json::object();
  int64_t total_size = 0;
  int64_t used_size = 0;
  int64_t evictions = 0;
  for (const auto& [name, tier] : Tiers(s)) {
    tiers[name] = TierJson(*tier);
    total_size += tier->budget_bytes;
    used_size += tier->bytes;
    evictions += tier->evictions;
  }
  const int64_t hits = PrefixHits(kv);
  Json named = Json::array();
  for (const conversation::NamedPrefixStats& prefix : state.manager->named_prefixes()) {
    named.push_back({{"name", prefix.name},
                     {"tokens", prefix.tokens},
                     {"preloaded", prefix.preloaded},
                     {"pinned_tokens", prefix.pinned_tokens},
                     {"requests", prefix.requests},
                     {"hits", prefix.hits},
                     {"hit_rate", HitRate(prefix.hits, prefix.requests - prefix.hits)}});
  }
  // zKV's summary fields: sizes and evictions over all tiers; hits and misses count requests
  // whose prompt prefix was (or was not) reused, from any source.
  return {{"total_size", total_size},
          {"used_size", used_size},
          {"prompt_cache_hits", hits},
          {"prompt_cache_misses", kv.cold},
          {"hit_rate", HitRate(hits, kv.cold)},
          {"evictions", evictions},
          {"named_prefixes", named},
          {"block_size", params.space.block_size},
          {"encoding", s.encoding},
          {"eviction", s.eviction},
          {"restore", state.config.restore},
          {"tiers", tiers},
          {"tree_nodes", s.tree_nodes},
          {"stored_blocks", s.stored_blocks},
          {"stored_bytes", s.stored_bytes},
          {"stored_raw_bytes", s.stored_raw_bytes},
          {"corrupt_blocks", s.corrupt_blocks},
          {"incompatible_blocks", s.incompatible_blocks},
          {"recovered_blocks", s.recovered_blocks},
          {"pending_writes", s.pending_writes},
          {"write_errors", s.write_errors},
          {"writes_skipped_disk_full", s.writes_skipped},
          {"ttl_seconds", params.ttl_s},
          {"expired_blocks", s.expired_blocks},
          {"cleared_blocks", s.cleared_blocks},
          {"disk_full", s.disk_full},
          {"prefill_seconds_per_token", state.block_store->prefill_seconds_per_token()},
          {"prefix_sources",
           {{"own", kv.own},
            {"shared", kv.shared},
            {"ram", kv.restored_ram},
            {"disk", kv.restored_disk},
            {"remote", kv.restored_remote},
            {"none", kv.cold}}},
          {"restored_tokens", kv.restored_tokens},
          {"shared_tokens", kv.shared_tokens},
          {"restore_seconds", kv.restore_seconds},
          {"recompute_chosen", kv.recompute_chosen},
          {"safe_mode_fallbacks", kv.safe_mode_fallbacks},
          {"checkpoints", kv.checkpoints},
          {"checkpoint_errors", kv.checkpoint_errors},
          {"checkpoint_seconds", kv.checkpoint_seconds},
          {"recall_kv", RecallKvStatsJson(state.manager->recall_kv_stats())}};
}

void DefineCacheMetrics(ServerState& state) {
  MetricsRegistry& m = *state.metrics;
  m.DefineGauge("kvault_cache_blocks", "KV blocks held, by tier", {"tier"});
  m.DefineGauge("kvault_cache_bytes", "Bytes of KV blocks held, by tier", {"tier"});
  m.DefineGauge("kvault_cache_budget_bytes", "Budget of each tier", {"tier"});
  m.DefineCounter("kvault_cache_hits_total", "Blocks served, by tier", {"tier"});
  m.DefineCounter("kvault_cache_misses_total", "Blocks asked of a tier that lacked them", {"tier"});
  m.DefineCounter("kvault_cache_evictions_total", "Blocks evicted, by tier", {"tier"});
  m.DefineCounter("kvault_cache_read_bytes_total", "Bytes read (and decoded), by tier", {"tier"});
  m.DefineCounter("kvault_cache_written_bytes_total", "Bytes written, by tier", {"tier"});
  m.DefineGauge("kvault_cache_read_bandwidth_bytes_per_second",
                "Measured restore bandwidth, by tier", {"tier"});
  m.DefineCounter("kvault_cache_corrupt_blocks_total", "Blocks that failed their checks");
  m.DefineCounter("kvault_cache_expired_blocks_total", "Blocks dropped unused by --cache-ttl");
  m.DefineCounter("kvault_cache_cleared_blocks_total", "Blocks dropped by POST /v1/cache/clear");
  m.DefineCounter("kvault_safe_mode_fallbacks_total",
                  "Restores that failed and fell back to prefill");
  m.DefineCounter("kvault_prefix_source_total", "Requests by where their cached prefix came from",
                  {"source"});
  m.DefineCounter("kvault_restored_tokens_total", "Prompt tokens restored from RAM or disk");
  m.DefineGauge("kvault_cache_disk_full", "1 while the disk tier's file system is full");
  m.DefineCounter("kvault_recall_kv_tokens_total",
                  "Recalled history tokens, by how their KV came: materialized (kept KV shifted "
                  "into place) or prefilled",
                  {"how"});
  m.DefineCounter("kvault_recall_kv_chunks_total",
                  "Recalled chunks, by how their KV came: materialized or prefilled", {"how"});
  m.DefineCounter("kvault_recall_kv_spans_total",
                  "History spans a recall needed that were missing (not kept, evicted) or "
                  "failed (corrupt, refused)",
                  {"outcome"});
  m.DefineCounter("kvault_recall_kv_kept_spans_total",
                  "History spans whose KV was kept (128 tokens each)");
  m.DefineCounter("kvault_recall_kv_kept_bytes_total", "Encoded bytes of the kept history spans");
  m.DefineGauge("kvault_remote_up", "1 while the shared Redis answers (--remote-url)");
  m.DefineCounter("kvault_remote_errors_total", "Commands to the shared Redis that failed");
  m.DefineCounter("kvault_remote_writes_dropped_total",
                  "Blocks not written to the shared Redis (down, or its queue full)");
  m.DefineCounter("kvault_remote_adopted_conversations_total",
                  "Conversations continued from another replica's state");
  m.DefineCounter("kvault_remote_stale_writes_refused_total",
                  "Journal writes refused for a stale fencing token");
  m.DefineCounter("kvault_remote_shared_writes_total",
                  "Sessions and knowledge records written to the shared Redis", {"kind"});
  m.DefineGauge("kvault_prefix_hit_rate",
                "Fraction of requests whose prompt prefix was reused, from any source");
  m.DefineGauge("kvault_tier_hit_rate", "Fraction of blocks asked of a tier that it served",
                {"tier"});
  m.AddCollector([&state](MetricsRegistry& registry) {
    const store::BlockStoreStats s = state.block_store->stats();
    for (const auto& [name, tier] : Tiers(s)) {
      registry.Set("kvault_cache_blocks", {name}, static_cast<double>(tier->blocks));
      registry.Set("kvault_cache_bytes", {name}, static_cast<double>(tier->bytes));
      registry.Set("kvault_cache_budget_bytes", {name}, static_cast<double>(tier->budget_bytes));
      registry.SetTotal("kvault_cache_hits_total", {name}, static_cast<double>(tier->hits));
      registry.SetTotal("kvault_cache_misses_total", {name}, static_cast<double>(tier->misses));
      registry.SetTotal("kvault_cache_evictions_total", {name},
                        static_cast<double>(tier->evictions));
      registry.SetTotal("kvault_cache_read_bytes_total", {name},
                        static_cast<double>(tier->read_bytes));
      registry.SetTotal("kvault_cache_written_bytes_total", {name},
                        static_cast<double>(tier->write_bytes));
      registry.Set("kvault_cache_read_bandwidth_bytes_per_second", {name}, tier->read_bandwidth);
      registry.Set("kvault_tier_hit_rate", {name}, HitRate(tier->hits, tier->misses));
    }
    registry.SetTotal("kvault_cache_corrupt_blocks_total", {},
                      static_cast<double>(s.corrupt_blocks));
    registry.Set("kvault_cache_disk_full", {}, s.disk_full ? 1 : 0);
    if (state.remote != nullptr) {
      const store::RedisClientStats redis = state.remote->client().stats();
      const conversation::RemoteJournalStats journal = state.remote->stats();
      registry.Set("kvault_remote_up", {}, redis.up || redis.errors == 0 ? 1 : 0);
      registry.SetTotal("kvault_remote_errors_total", {}, static_cast<double>(redis.errors));
      registry.SetTotal("kvault_remote_writes_dropped_total", {},
                        static_cast<double>(s.remote_writes_dropped));
      registry.SetTotal("kvault_remote_adopted_conversations_total", {},
                        static_cast<double>(journal.adoptions));
      registry.SetTotal("kvault_remote_stale_writes_refused_total", {},
                        static_cast<double>(journal.stale_refused));
      if (state.remote_sessions != nullptr) {
        registry.SetTotal("kvault_remote_shared_writes_total", {"session"},
                          static_cast<double>(state.remote_sessions->writes()));
      }
      if (state.remote_knowledge != nullptr) {
        registry.SetTotal("kvault_remote_shared_writes_total", {"knowledge"},
                          static_cast<double>(state.remote_knowledge->published()));
      }
    }
    registry.SetTotal("kvault_cache_expired_blocks_total", {},
                      static_cast<double>(s.expired_blocks));
    registry.SetTotal("kvault_cache_cleared_blocks_total", {},
                      static_cast<double>(s.cleared_blocks));
    const conversation::KvCacheStats kv = state.manager->kv_stats();
    registry.SetTotal("kvault_safe_mode_fallbacks_total", {},
                      static_cast<double>(kv.safe_mode_fallbacks));
    registry.SetTotal("kvault_restored_tokens_total", {}, static_cast<double>(kv.restored_tokens));
    registry.Set("kvault_prefix_hit_rate", {}, HitRate(PrefixHits(kv), kv.cold));
    const conversation::RecallKvStats recall = state.manager->recall_kv_stats();
    const conversation::RecallKvCounts& totals = recall.totals;
    registry.SetTotal("kvault_recall_kv_tokens_total", {"materialized"},
                      static_cast<double>(totals.tokens_materialized));
    registry.SetTotal("kvault_recall_kv_tokens_total", {"prefilled"},
                      static_cast<double>(totals.tokens_prefilled));
    registry.SetTotal("kvault_recall_kv_chunks_total", {"materialized"},
                      static_cast<double>(totals.chunks_materialized));
    registry.SetTotal("kvault_recall_kv_chunks_total", {"prefilled"},
                      static_cast<double>(totals.chunks_prefilled));
    registry.SetTotal("kvault_recall_kv_spans_total", {"missing"},
                      static_cast<double>(totals.spans_missing));
    registry.SetTotal("kvault_recall_kv_spans_total", {"failed"},
                      static_cast<double>(totals.spans_failed));
    registry.SetTotal("kvault_recall_kv_kept_spans_total", {},
                      static_cast<double>(recall.kept_spans));
    registry.SetTotal("kvault_recall_kv_kept_bytes_total", {},
                      static_cast<double>(recall.kept_bytes));
    const std::pair<const char*, int64_t> sources[] = {{"own", kv.own},
                                                       {"shared", kv.shared},
                                                       {"ram", kv.restored_ram},
                                                       {"disk", kv.restored_disk},
                                                       {"remote", kv.restored_remote},
                                                       {"none", kv.cold}};
    for (const auto& [source, n] : sources) {
      registry.SetTotal("kvault_prefix_source_total", {source}, static_cast<double>(n));
    }
  });
}

void AddCacheRoutes(httplib::Server& http, ServerState& state) {
  AddRoute(http, state, "GET", "/v1/cache/stats", "cache_stats", RouteAuth::kRequired,
           [&state](RouteContext& context) { SendJson(context.response, CacheStatsJson(state)); });
  AddRoute(http, state, "POST", "/v1/cache/clear", "cache_clear", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Status cleared = ClearCache(state, context);
             if (!cleared.ok()) SendError(context.response, cleared);
           });
  AddRoute(http, state, "GET", "/v1/cache/tree", "cache_tree", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Result<int64_t> asked = IntParam(context.request, "limit", 50, 1, 10000);
             if (!asked.ok()) return SendError(context.response, asked.status());
             const size_t limit = static_cast<size_t>(*asked);
             const engine::Tokenizer tokenizer(*state.model);
             // A key sees its own blocks and the shared ones, never another key's prompts.
             const std::vector<kv::BlockName> visible =
                 state.manager->kv_cache().VisiblePartitions(context.scope);
             Json nodes = Json::array();
             for (const store::NodeView& node : state.block_store->TopNodes(limit, visible)) {
               nodes.push_back({{"block", node.name.ToHex()},
                                {"parent", node.parent.ToHex()},
                                {"depth", node.depth},
                                {"first_token",
                                 (node.depth - 1) * state.block_store->params().space.block_size},
                                {"tokens", node.tokens.size()},
                                {"tier", TierNames(node.tiers)},
                                {"hits", node.hits},
                                {"bytes", node.bytes},
                                {"pins", node.pins},
                                {"idle_seconds", node.idle_seconds},
                                {"preview", Preview(tokenizer, node.tokens)}});
             }
             // The prompts sent (conversation/prompt_trie.h), in both modes: with --upstream
             // the block store is empty and this is the tree to read.
             const conversation::PromptTrie& trie = state.manager->prompt_trie();
             Json hot = Json::array();
             for (const conversation::HotPrefix& prefix : trie.Hot(context.scope, limit)) {
               hot.push_back({{"depth", prefix.depth},
                              {"count", prefix.count},
                              {"continuations", prefix.children},
                              {"head", Preview(tokenizer, prefix.head)},
                              {"tail", Preview(tokenizer, prefix.tail)}});
             }
             SendJson(context.response, {{"object", "cache.tree"},
                                         {"nodes", state.block_store->CountNodes(visible)},
                                         {"top", nodes},
                                         {"prompts",
                                          {{"chunk_tokens", conversation::PromptTrie::kChunk},
                                           {"nodes", trie.nodes()},
                                           {"hot", hot}}}});
           });
}

}  // namespace kvault::server
