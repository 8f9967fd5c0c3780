// kvault session list|info|rm: the named sessions of a data folder, without a server.
// (A running server re-reads sessions on its own; removing one here while a server runs
// leaves its blocks pinned there until the server restarts.)
#include <cstdio>
#include <ctime>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/paths.h"

#include "kvault/conversation/session_store.h"

namespace kvault::cli {
namespace {

std::string Timestamp(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// Sessions of every API key scope: the CLI is the machine's owner.
Result<conversation::Session> FindAnyScope(conversation::SessionStore& store,
                                           const std::string& name) {
  Result<std::vector<conversation::Session>> all = store.List("", /*all_scopes=*/true);
  if (!all.ok()) return all.status();
  for (conversation::Session& s : *all) {
    if (s.name == name) return std::move(s);
  }
  return NotFoundError("no session '" + name + "'");
}

}  // namespace

int RunSession(int argc, char** argv) {
  CLI::App app("Named sessions saved by `kvault serve` (POST /v1/sessions/{name}/save).",
               "session");
  std::string data_dir = DefaultDataDir();
  app.add_option("--data-dir", data_dir, "the server's --data-dir")->capture_default_str();
  app.require_subcommand(1);
  // `--data-dir` is the parent's but may also follow the subcommand (`session list
  // --data-dir D`, the README's order): subcommands made after this inherit the fall-through.
  app.fallthrough();
  CLI::App* list = app.add_subcommand("list", "every session: name, tokens, bytes, created");
  std::string name;
  CLI::App* info = app.add_subcommand("info", "one session in detail");
  info->add_option("name", name, "session name")->required();
  CLI::App* rm = app.add_subcommand("rm", "delete a session");
  rm->add_option("name", name, "session name")->required();
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;

  Result<std::unique_ptr<conversation::SessionStore>> store =
      conversation::SessionStore::Open(data_dir + "/sessions");
  if (!store.ok()) return ReportError(store.status());
  if (list->parsed()) {
    Result<std::vector<conversation::Session>> all = (*store)->List("", /*all_scopes=*/true);
    if (!all.ok()) return ReportError(all.status());
    std::printf("%-32s %10s %10s %12s  %s\n", "NAME", "TOKENS", "KV_TOKENS", "BYTES", "CREATED");
    for (const conversation::Session& s : *all) {
      std::printf("%-32s %10zu %10lld %12lld  %s\n", s.name.c_str(), s.tokens.size(),
                  static_cast<long long>(s.kv_tokens), static_cast<long long>(s.kv_bytes),
                  Timestamp(s.created_unix).c_str());
    }
    return 0;
  }
  if (Status valid = conversation::ValidateSessionName(name); !valid.ok()) {
    return ReportError(valid);
  }
  Result<conversation::Session> session = FindAnyScope(**store, name);
  if (!session.ok()) return ReportError(session.status());
  if (info->parsed()) {
    std::printf("name:            %s\n", session->name.c_str());
    std::printf("conversation_id: %s\n", session->conversation_id.c_str());
    std::printf("created:         %s\n", Timestamp(session->created_unix).c_str());
    std::printf("model:           %s\n", session->model.c_str());
    std::printf("turns:           %zu\n", session->turns.size());
    std::printf("tokens:          %zu\n", session->tokens.size());
    std::printf("kv_tokens:       %lld\n", static_cast<long long>(session->kv_tokens));
    std::printf("kv_blocks:       %zu\n", session->blocks.size());
    std::printf("bytes:           %lld\n", static_cast<long long>(session->kv_bytes));
    return 0;
  }
  Status removed = (*store)->Remove(session->scope, name);
  if (!removed.ok()) return ReportError(removed);
  std::printf("removed session '%s'\n", name.c_str());
  return 0;
}

}  // namespace kvault::cli
