// kvault session list|info|rm|export|import: the named sessions of a data folder, without a
// server. (A running server re-reads sessions on its own; removing one here while a server
// runs leaves its blocks pinned there until the server restarts, and blocks imported here
// are found by a server at its next start.)
//
// export/import move a session as one file (conversation/session_file.h), its KV blocks read
// from and written to the cache folder's block files (store/block_files.h). Offline, there is
// no model to compare with: an imported session's KV is kept under its model's block
// namespace, which a server of that model restores and a server of another model never sees
// (it loads the history and recomputes).
#include <cstdio>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/paths.h"

#include "kvault/base/file.h"
#include "kvault/conversation/session_file.h"
#include "kvault/conversation/session_store.h"
#include "kvault/kv/snapshot_codec.h"
#include "kvault/store/block_files.h"

namespace kvault::cli {
namespace {

using conversation::Session;
using conversation::SessionStore;

// Sessions of every API key scope: the CLI is the machine's owner.
Result<Session> FindAnyScope(SessionStore& store, const std::string& name) {
  Result<std::vector<Session>> all = store.List("", /*all_scopes=*/true);
  if (!all.ok()) return all.status();
  for (Session& s : *all) {
    if (s.name == name) return std::move(s);
  }
  return NotFoundError("no session '" + name + "'");
}

void PrintInfo(const Session& s) {
  std::printf("name:             %s\n", s.name.c_str());
  std::printf("conversation_id:  %s\n", s.conversation_id.c_str());
  std::printf("created_at:       %s\n", conversation::IsoTimestampUtc(s.created_unix).c_str());
  std::printf("model:            %s\n", s.model.c_str());
  std::printf("turns:            %zu\n", s.turns.size());
  std::printf("context_length:   %zu\n", s.tokens.size());
  std::printf("kv_tokens:        %lld\n", static_cast<long long>(s.kv_tokens));
  std::printf("kv_blocks:        %zu\n", s.blocks.size());
  std::printf("cache_size_bytes: %lld\n", static_cast<long long>(s.kv_bytes));
}

int Export(SessionStore& store, const std::string& cache_dir, const std::string& name,
           const std::string& out_path) {
  Result<Session> session = FindAnyScope(store, name);
  if (!session.ok()) return ReportError(session.status());
  const size_t n_blocks = session->blocks.size();
  std::vector<store::BlockBytes> found = store::ReadBlockFiles(cache_dir, session->blocks);
  const conversation::SessionFile file =
      conversation::PackSessionFile(std::move(session).value(), std::move(found));
  const std::vector<uint8_t> bytes = conversation::EncodeSessionFile(file);
  if (Status written = WriteFileAtomic(out_path, bytes); !written.ok()) {
    return ReportError(written);
  }
  std::printf(
      "exported session '%s' to %s: %zu turns, %zu tokens, KV %zu of %zu blocks "
      "(%lld tokens), %zu bytes\n",
      name.c_str(), out_path.c_str(), file.session.turns.size(), file.session.tokens.size(),
      file.blocks.size(), n_blocks, static_cast<long long>(file.session.kv_tokens), bytes.size());
  if (file.blocks.size() < n_blocks) {
    // A running server writes a session's last (partial) block to disk a few seconds late.
    std::printf(
        "note: the other blocks are not in %s (a running server may not have written "
        "them yet: stop it, or use GET /v1/sessions/%s/export)\n",
        cache_dir.c_str(), name.c_str());
  }
  return 0;
}

int Import(SessionStore& store, const std::string& cache_dir, const std::string& in_path,
           const std::string& rename) {
  Result<std::vector<uint8_t>> bytes = ReadFileToBytes(in_path);
  if (!bytes.ok()) return ReportError(bytes.status());
  Result<conversation::SessionFile> file = conversation::DecodeSessionFile(*bytes);
  if (!file.ok()) return ReportError(file.status().WithPrefix(in_path));
  Session session = file->session;
  if (!rename.empty()) session.name = rename;
  if (Status valid = conversation::ValidateSessionName(session.name); !valid.ok()) {
    return ReportError(valid);
  }
  // Scope "" (the blocks' shared partition): the CLI does not know the server's API keys.
  session.scope.clear();
  Result<std::vector<store::BlockBytes>> rooted = conversation::ReRootBlocks(file->blocks, {});
  if (!rooted.ok()) return ReportError(InvalidArgumentError(rooted.status().message()));
  if (Status written = store::WriteBlockFiles(cache_dir, *rooted); !written.ok()) {
    return ReportError(written.code() == StatusCode::kCorruption
                           ? InvalidArgumentError("session file: " + written.message())
                           : written);
  }
  session.blocks.clear();
  session.kv_bytes = 0;
  for (const store::BlockBytes& block : *rooted) {
    session.blocks.push_back(kv::PeekBlockMeta(*block)->name);  // decoded just above
    session.kv_bytes += static_cast<int64_t>(block->size());
  }
  std::string replaced_as;
  if (Result<Session> previous = store.Get("", session.name); previous.ok()) {
    Session archived = *previous;
    archived.name = store.ArchiveName("", session.name, previous->created_unix);
    archived.blocks.clear();
    archived.kv_tokens = 0;
    archived.kv_bytes = 0;
    if (Status kept = store.Put(archived); !kept.ok()) return ReportError(kept);
    replaced_as = archived.name;
  }
  if (Status put = store.Put(session); !put.ok()) return ReportError(put);
  std::printf(
      "imported session '%s': %zu turns, %zu tokens; KV: %zu blocks (%lld tokens) of "
      "model %s in %s, restored by a server of that model (another loads the history "
      "only)\n",
      session.name.c_str(), session.turns.size(), session.tokens.size(), session.blocks.size(),
      static_cast<long long>(session.kv_tokens), session.model.c_str(), cache_dir.c_str());
  if (!replaced_as.empty()) {
    std::printf("the session it replaced is kept as '%s'\n", replaced_as.c_str());
  }
  return 0;
}

}  // namespace

int RunSession(int argc, char** argv) {
  CLI::App app("Named sessions saved by `kvault serve` (POST /v1/sessions/{name}/save).",
               "session");
  std::string data_dir = DefaultDataDir();
  std::string cache_dir = DefaultCacheDir() + "/blocks";  // serve's default
  app.add_option("--data-dir", data_dir, "the server's --data-dir")->capture_default_str();
  app.add_option("--cache-dir", cache_dir, "the server's --cache-dir (KV blocks)")
      ->capture_default_str();
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
  std::string path;
  CLI::App* exp = app.add_subcommand("export", "write a session and its KV to one file");
  exp->add_option("name", name, "session name")->required();
  exp->add_option("-o,--output", path, "the file to write")->required();
  CLI::App* imp = app.add_subcommand("import", "store a session file (from export)");
  imp->add_option("file", path, "the session file")->required();
  imp->add_option("--name", name, "store it under this name (default: the file's)");
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;

  Result<std::unique_ptr<SessionStore>> store = SessionStore::Open(data_dir + "/sessions");
  if (!store.ok()) return ReportError(store.status());
  if (imp->parsed()) return Import(**store, cache_dir, path, name);
  if (list->parsed()) {
    Result<std::vector<Session>> all = (*store)->List("", /*all_scopes=*/true);
    if (!all.ok()) return ReportError(all.status());
    std::printf("%-32s %10s %10s %12s  %s\n", "NAME", "TOKENS", "KV_TOKENS", "BYTES", "CREATED");
    for (const Session& s : *all) {
      std::printf("%-32s %10zu %10lld %12lld  %s\n", s.name.c_str(), s.tokens.size(),
                  static_cast<long long>(s.kv_tokens), static_cast<long long>(s.kv_bytes),
                  conversation::IsoTimestampUtc(s.created_unix).c_str());
    }
    return 0;
  }
  if (Status valid = conversation::ValidateSessionName(name); !valid.ok()) {
    return ReportError(valid);
  }
  if (exp->parsed()) return Export(**store, cache_dir, name, path);
  Result<Session> session = FindAnyScope(**store, name);
  if (!session.ok()) return ReportError(session.status());
  if (info->parsed()) {
    PrintInfo(*session);
    return 0;
  }
  Result<conversation::Session> removed = (*store)->Remove(session->scope, name);
  if (!removed.ok()) return ReportError(removed.status());
  std::printf("removed session '%s'\n", name.c_str());
  return 0;
}

}  // namespace kvault::cli
