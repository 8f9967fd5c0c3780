// Named sessions (the zKV seed's session API): save, load, list, info, clear, delete.
//
//   POST   /v1/sessions/{name}/save   {"conversation_id"}         saves a conversation
//   POST   /v1/sessions/{name}/load   {"conversation_id"?}        into a conversation (default:
//                                                                  the session's name)
//   GET    /v1/sessions                                            every session of the key
//   GET    /v1/sessions/{name}                                     tokens, bytes, created, model
//   POST   /v1/sessions/{name}/clear                               empties it, keeps the name
//   DELETE /v1/sessions/{name}
//   GET    /v1/sessions/{name}/export                              the session as a file
//   POST   /v1/sessions/import[?name=N]  body: a session file      stores it (its own name
//                                                                  unless N is given)
#include "kvault/base/status_macros.h"
#include "kvault/server/http_route.h"
#include "kvault/server/routes.h"

namespace kvault::server {
namespace {

Json SessionJson(const conversation::Session& s) {
  return {{"object", "session"},
          {"name", s.name},
          {"conversation_id", s.conversation_id},
          {"created", s.created_unix},
          {"created_at", conversation::IsoTimestampUtc(s.created_unix)},  // zKV's names
          {"context_length", s.tokens.size()},
          {"cache_size_bytes", s.kv_bytes},
          {"model", s.model},
          {"turns", s.turns.size()},
          {"tokens", s.tokens.size()},
          {"kv_tokens", s.kv_tokens},
          {"bytes", s.kv_bytes},
          {"blocks", s.blocks.size()}};
}

std::string NameOf(const RouteContext& context) { return context.request.matches[1].str(); }

// The body's conversation_id, or `fallback` if it has none (and fallback is not empty).
Result<std::string> ConversationIdOf(const RouteContext& context, const std::string& fallback) {
  Json body = Json::object();
  if (!context.request.body.empty()) {
    KV_ASSIGN_OR_RETURN(body, RequestJson(context.request));
  }
  if (!body.is_object()) return InvalidArgumentError("the body must be a JSON object");
  KV_ASSIGN_OR_RETURN(std::optional<std::string> id,
                      OptionalString(body, "conversation_id", "conversation_id"));
  if (id && !id->empty()) return *id;
  if (!fallback.empty()) return fallback;
  return InvalidArgumentError("'conversation_id' is required");
}

}  // namespace

void AddSessionRoutes(httplib::Server& http, ServerState& state) {
  const std::string name = "/v1/sessions/([^/]+)";
  AddRoute(http, state, "POST", name + "/save", "sessions_save", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Result<std::string> id = ConversationIdOf(context, "");
             if (!id.ok()) return SendError(context.response, id.status());
             Result<conversation::SavedSession> saved =
                 state.manager->sessions().Save(context.scope, *id, NameOf(context));
             if (!saved.ok()) return SendError(context.response, saved.status());
             Json body = SessionJson(saved->session);
             // The name the session it replaced is kept under (loadable); null if none.
             body["replaced_as"] =
                 saved->replaced_as.empty() ? Json(nullptr) : Json(saved->replaced_as);
             SendJson(context.response, body);
           });
  AddRoute(http, state, "POST", name + "/load", "sessions_load", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Result<std::string> id = ConversationIdOf(context, NameOf(context));
             if (!id.ok()) return SendError(context.response, id.status());
             Status loaded = state.manager->sessions().Load(context.scope, NameOf(context), *id);
             if (!loaded.ok()) return SendError(context.response, loaded);
             SendJson(context.response,
                      {{"status", "loaded"}, {"name", NameOf(context)}, {"conversation_id", *id}});
           });
  AddRoute(http, state, "GET", name + "/export", "sessions_export", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Result<std::vector<uint8_t>> file =
                 state.manager->sessions().Export(context.scope, NameOf(context));
             if (!file.ok()) return SendError(context.response, file.status());
             context.response.set_header("Content-Disposition",
                                         "attachment; filename=\"" + NameOf(context) + ".kvs\"");
             context.response.set_content(reinterpret_cast<const char*>(file->data()), file->size(),
                                          "application/octet-stream");
           });
  AddRoute(http, state, "POST", "/v1/sessions/import", "sessions_import", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             const std::string& body = context.request.body;
             Result<conversation::ImportedSession> imported = state.manager->sessions().Import(
                 context.scope, {reinterpret_cast<const uint8_t*>(body.data()), body.size()},
                 context.request.get_param_value("name"));
             if (!imported.ok()) return SendError(context.response, imported.status());
             Json reply = SessionJson(imported->session);
             reply["kv"] = imported->kv;
             reply["replaced_as"] =
                 imported->replaced_as.empty() ? Json(nullptr) : Json(imported->replaced_as);
             SendJson(context.response, reply);
           });
  AddRoute(http, state, "POST", name + "/clear", "sessions_clear", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Status cleared = state.manager->sessions().Clear(context.scope, NameOf(context));
             if (!cleared.ok()) return SendError(context.response, cleared);
             SendJson(context.response, {{"status", "cleared"}, {"name", NameOf(context)}});
           });
  AddRoute(http, state, "GET", "/v1/sessions", "sessions_list", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Result<std::vector<conversation::Session>> all =
                 state.manager->sessions().List(context.scope);
             if (!all.ok()) return SendError(context.response, all.status());
             Json data = Json::array();
             for (const conversation::Session& s : *all) data.push_back(SessionJson(s));
             SendJson(context.response, {{"object", "list"}, {"data", data}});
           });
  AddRoute(http, state, "GET", name, "sessions_info", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Result<conversation::Session> s =
                 state.manager->sessions().Get(context.scope, NameOf(context));
             if (!s.ok()) return SendError(context.response, s.status());
             SendJson(context.response, SessionJson(*s));
           });
  AddRoute(http, state, "DELETE", name, "sessions_delete", RouteAuth::kRequired,
           [&state](RouteContext& context) {
             Status deleted = state.manager->sessions().Delete(context.scope, NameOf(context));
             if (!deleted.ok()) return SendError(context.response, deleted);
             SendJson(context.response, {{"status", "deleted"}, {"name", NameOf(context)}});
           });
}

}  // namespace kvault::server
