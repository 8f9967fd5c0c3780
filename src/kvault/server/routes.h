// server/routes.h: the route groups, each in its own routes_*.cc.
#pragma once

#include <httplib.h>

#include "kvault/base/json.h"
#include "kvault/server/server_state.h"

namespace kvault::server {

// POST /v1/chat/completions, POST /v1/completions, GET /v1/models.
void AddOpenAiRoutes(httplib::Server& http, ServerState& state);
// POST /v1/conversations/end, POST /v1/conversations/list.
void AddConversationRoutes(httplib::Server& http, ServerState& state);
// GET /health, GET /metrics.
void AddHealthRoutes(httplib::Server& http, ServerState& state);

// /v1/sessions: save, load, list, info, clear, delete.
void AddSessionRoutes(httplib::Server& http, ServerState& state);
// GET /dashboard (public, static HTML that polls the routes above), GET / redirects to it.
void AddDashboardRoutes(httplib::Server& http, ServerState& state);
// GET /v1/knowledge, POST /v1/knowledge/{topic}, GET /v1/knowledge/search.
void AddKnowledgeRoutes(httplib::Server& http, ServerState& state);
// The knowledge store's counts over every API key (part of /health).
Json KnowledgeStatsJson(const ServerState& state);
// GET /v1/analytics, GET /v1/analytics/requests (analytics/analytics_store.h).
void AddAnalyticsRoutes(httplib::Server& http, ServerState& state);
// GET /v1/cache/stats, GET /v1/cache/tree.
void AddCacheRoutes(httplib::Server& http, ServerState& state);
// The KV state engine's statistics (also part of /health).
Json CacheStatsJson(const ServerState& state);
void DefineCacheMetrics(ServerState& state);

// The metric families kvault exports, and the collectors that read live state.
void DefineMetrics(ServerState& state);

}  // namespace kvault::server
