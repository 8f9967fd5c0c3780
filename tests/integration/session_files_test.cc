// End to end, sessions as files (zKV's session.save / load_session): a session saved on one
// server is exported over HTTP and by the CLI, imported into a second server with other
// folders (over HTTP, by the CLI offline, and under an API key), and its next turn is served
// from the KV that came with the file; a server of another model imports the history only,
// saying so; bad and truncated files are refused and leave nothing behind.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>

#include "tests/integration/server_process.h"
#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

const char* kSystem =
    "You are the archivist of a long-running research station. You remember every log entry "
    "the crew dictates, answer questions about them precisely, and never invent entries. Each "
    "entry has a date, an author, a weather note and a short description of the work done.";
const char* kFirst = "Log entry one: Mara calibrated the wind sensors on the north mast.";
const char* kNext = "Log entry two: Ivo repaired the generator and measured the fuel left.";

struct Reply {
  int status = 0;
  Json body;
};

class SessionFilesTest : public ::testing::Test {
 protected:
  SessionFilesTest() {
    char pattern[] = "/tmp/kvault_session_files_XXXXXX";
    dir_ = ::mkdtemp(pattern);
  }
  ~SessionFilesTest() override { std::filesystem::remove_all(dir_); }

  // A server whose state lives under dir_/<folder>.
  std::unique_ptr<ServerProcess> Start(const std::string& folder,
                                       std::vector<std::string> extra = {},
                                       const std::string& model = TestModelPath()) {
    std::vector<std::string> args = {"--model",      model,
                                     "--block-size", "32",
                                     "--cache-dir",  Folder(folder) + "/blocks",
                                     "--data-dir",   Folder(folder) + "/data"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }
  std::string Folder(const std::string& name) const { return dir_ + "/" + name; }

  static httplib::Client Client(const ServerProcess& server, const std::string& key = "") {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(120));
    if (!key.empty()) client.set_bearer_token_auth(key);
    return client;
  }
  static Reply Post(const ServerProcess& server, const std::string& path, const std::string& body,
                    const std::string& key = "", const std::string& type = "application/json") {
    httplib::Result result = Client(server, key).Post(path, body, type);
    if (!result) return {};
    return {result->status, ParseJson(result->body).value_or(Json())};
  }
  static Reply Get(const ServerProcess& server, const std::string& path,
                   const std::string& key = "") {
    httplib::Result result = Client(server, key).Get(path);
    if (!result) return {};
    return {result->status, ParseJson(result->body).value_or(Json())};
  }
  // One turn of `conversation`; the reply's JSON.
  static Json Chat(const ServerProcess& server, const std::string& conversation,
                   const std::string& user, bool with_system, const std::string& key = "") {
    Json messages = Json::array();
    if (with_system) messages.push_back({{"role", "system"}, {"content", kSystem}});
    messages.push_back({{"role", "user"}, {"content", user}});
    const Reply reply = Post(server, "/v1/chat/completions",
                             DumpJson({{"conversation_id", conversation},
                                       {"messages", messages},
                                       {"max_tokens", 8},
                                       {"temperature", 0}}),
                             key);
    EXPECT_EQ(reply.status, 200) << reply.body.dump();
    return reply.body;
  }
  static int64_t CachedTokens(const Json& reply) {
    return reply["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
  }
  // The conversation's turns as (role, content) pairs.
  static Json Turns(const ServerProcess& server, const std::string& conversation,
                    const std::string& key = "") {
    const Reply history = Get(server, "/v1/conversations/" + conversation + "/history", key);
    EXPECT_EQ(history.status, 200) << history.body.dump();
    Json turns = Json::array();
    for (const Json& turn : history.body["turns"]) {
      turns.push_back({turn["role"], turn["content"]});
    }
    return turns;
  }
  // Saves conversation "origin" (one turn) as session `name` and exports it over HTTP.
  static std::string SaveAndExport(const ServerProcess& server, const std::string& name,
                                   const std::string& key = "") {
    Chat(server, "origin", kFirst, true, key);
    const Reply saved =
        Post(server, "/v1/sessions/" + name + "/save", R"({"conversation_id":"origin"})", key);
    EXPECT_EQ(saved.status, 200) << saved.body.dump();
    httplib::Result exported = Client(server, key).Get("/v1/sessions/" + name + "/export");
    EXPECT_TRUE(exported && exported->status == 200);
    if (!exported) return "";
    EXPECT_EQ(exported->get_header_value("Content-Type"), "application/octet-stream");
    return exported->body;
  }
  void WriteFile(const std::string& path, const std::string& bytes) const {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  static ProcessResult Kvault(std::vector<std::string> args) {
    args.insert(args.begin(), KvaultBinary());
    return RunProcess(args);
  }

  std::string dir_;
};

TEST_F(SessionFilesTest, AnExportedSessionBringsItsKvToAnotherServer) {
  std::string http_file;
  Json origin_turns;
  {
    auto a = Start("a");
    ASSERT_TRUE(a->ok());
    http_file = SaveAndExport(*a, "trip");
    ASSERT_FALSE(http_file.empty());
    origin_turns = Turns(*a, "origin");
    ASSERT_EQ(origin_turns.size(), 3u);  // system, user, assistant
    // zKV's names beside kvault's.
    const Json info = Get(*a, "/v1/sessions/trip").body;
    EXPECT_EQ(info["context_length"], info["tokens"]);
    EXPECT_GT(info["context_length"].get<int64_t>(), 60);
    EXPECT_EQ(info["cache_size_bytes"], info["bytes"]);
    EXPECT_GT(info["cache_size_bytes"].get<int64_t>(), 0);
    EXPECT_TRUE(std::regex_match(info["created_at"].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")))
        << info.dump();
    EXPECT_EQ(a->Terminate(), 0);  // its last blocks reach the disk
  }
  // The CLI, offline, from the same folders: the same file.
  const std::string cli_file = dir_ + "/trip.kvs";
  ProcessResult exported = Kvault({"session", "export", "trip", "-o", cli_file, "--data-dir",
                                   Folder("a") + "/data", "--cache-dir", Folder("a") + "/blocks"});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_NE(exported.out.find("exported session 'trip'"), std::string::npos) << exported.out;
  EXPECT_EQ(ReadFile(cli_file), http_file);

  // Over HTTP into a second server with other folders.
  auto b = Start("b");
  ASSERT_TRUE(b->ok());
  const Reply imported = Post(*b, "/v1/sessions/import", http_file, "", "application/octet-stream");
  ASSERT_EQ(imported.status, 200) << imported.body.dump();
  EXPECT_EQ(imported.body["name"], "trip");
  EXPECT_EQ(imported.body["kv"], "imported");
  EXPECT_GT(imported.body["kv_tokens"].get<int64_t>(), 60) << imported.body.dump();
  EXPECT_TRUE(imported.body["replaced_as"].is_null());
  ASSERT_EQ(Post(*b, "/v1/sessions/trip/load", R"({"conversation_id":"copy"})").status, 200);
  EXPECT_EQ(Turns(*b, "copy"), origin_turns);
  const Json next = Chat(*b, "copy", kNext, false);
  EXPECT_GT(CachedTokens(next), 60) << next.dump();  // the KV came with the file

  // Importing over the name keeps the session it replaces; ?name= picks another name.
  const Reply again = Post(*b, "/v1/sessions/import", http_file, "", "application/octet-stream");
  ASSERT_EQ(again.status, 200) << again.body.dump();
  ASSERT_TRUE(again.body["replaced_as"].is_string()) << again.body.dump();
  EXPECT_EQ(Get(*b, "/v1/sessions/" + again.body["replaced_as"].get<std::string>()).status, 200);
  const Reply renamed =
      Post(*b, "/v1/sessions/import?name=trip-2", http_file, "", "application/octet-stream");
  EXPECT_EQ(renamed.status, 200);
  EXPECT_EQ(renamed.body["name"], "trip-2");

  // The CLI, offline, into a third server's folders: found with its KV at that server's start.
  ProcessResult cli_imported =
      Kvault({"session", "import", cli_file, "--data-dir", Folder("c") + "/data", "--cache-dir",
              Folder("c") + "/blocks"});
  ASSERT_EQ(cli_imported.exit_code, 0) << cli_imported.err;
  EXPECT_NE(cli_imported.out.find("imported session 'trip'"), std::string::npos)
      << cli_imported.out;
  auto c = Start("c");
  ASSERT_TRUE(c->ok());
  EXPECT_GT(Get(*c, "/v1/sessions/trip").body["kv_tokens"].get<int64_t>(), 60);
  ASSERT_EQ(Post(*c, "/v1/sessions/trip/load", R"({"conversation_id":"copy"})").status, 200);
  EXPECT_EQ(Turns(*c, "copy"), origin_turns);
  EXPECT_GT(CachedTokens(Chat(*c, "copy", kNext, false)), 60);
}

TEST_F(SessionFilesTest, AKeyImportsIntoItsOwnScope) {
  auto a = Start("a");
  const std::string file = SaveAndExport(*a, "trip");
  const Json origin_turns = Turns(*a, "origin");
  auto b = Start("b", {"--api-key", "key-one,key-two"});
  ASSERT_TRUE(b->ok());
  const Reply imported =
      Post(*b, "/v1/sessions/import", file, "key-one", "application/octet-stream");
  ASSERT_EQ(imported.status, 200) << imported.body.dump();
  EXPECT_EQ(imported.body["kv"], "imported");
  // The other key does not see it; the importing key restores its KV (renamed into its
  // partition).
  EXPECT_EQ(Get(*b, "/v1/sessions", "key-two").body["data"].size(), 0u);
  EXPECT_EQ(Get(*b, "/v1/sessions/trip", "key-two").status, 404);
  ASSERT_EQ(Post(*b, "/v1/sessions/trip/load", R"({"conversation_id":"copy"})", "key-one").status,
            200);
  EXPECT_EQ(Turns(*b, "copy", "key-one"), origin_turns);
  EXPECT_GT(CachedTokens(Chat(*b, "copy", kNext, false, "key-one")), 60);
  EXPECT_EQ(Post(*b, "/v1/sessions/import", file, "", "application/octet-stream").status, 401);
}

TEST_F(SessionFilesTest, AnotherModelsServerImportsTheHistoryOnlyAndSaysSo) {
  const std::string other_model = dir_ + "/other.gguf";
  ProcessResult made = Kvault(
      {"make-model", "--preset", "tiny", "--seed", "77", "--output-scale", "8", "-o", other_model});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto a = Start("a");
  const std::string file = SaveAndExport(*a, "trip");
  const Json origin_turns = Turns(*a, "origin");

  auto other = Start("other", {}, other_model);
  ASSERT_TRUE(other->ok());
  const Reply imported = Post(*other, "/v1/sessions/import", file, "", "application/octet-stream");
  ASSERT_EQ(imported.status, 200) << imported.body.dump();
  EXPECT_EQ(imported.body["kv"].get<std::string>().rfind("skipped: other model", 0), 0u)
      << imported.body.dump();
  EXPECT_EQ(imported.body["kv_tokens"], 0);
  EXPECT_EQ(imported.body["blocks"], 0);
  EXPECT_GT(imported.body["context_length"].get<int64_t>(), 0);  // this model's tokens
  ASSERT_EQ(Post(*other, "/v1/sessions/trip/load", R"({"conversation_id":"copy"})").status, 200);
  EXPECT_EQ(Turns(*other, "copy"), origin_turns);
  EXPECT_EQ(CachedTokens(Chat(*other, "copy", kNext, false)), 0);
}

TEST_F(SessionFilesTest, BadOrTruncatedFilesAreRefusedAndNothingIsStored) {
  auto a = Start("a");
  const std::string file = SaveAndExport(*a, "trip");
  ASSERT_GT(file.size(), 100u);
  std::string flipped = file;
  flipped[flipped.size() / 2] ^= 0x10;
  auto b = Start("b");
  ASSERT_TRUE(b->ok());
  for (const std::string& bad : {file.substr(0, file.size() / 2), file.substr(0, file.size() - 1),
                                 flipped, std::string(R"({"name":"trip"})"), std::string()}) {
    const Reply refused = Post(*b, "/v1/sessions/import", bad, "", "application/octet-stream");
    EXPECT_EQ(refused.status, 400) << refused.body.dump();
    EXPECT_NE(refused.body["error"]["message"].get<std::string>().find("session file"),
              std::string::npos)
        << refused.body.dump();
  }
  EXPECT_EQ(Get(*b, "/v1/sessions").body["data"].size(), 0u);
  EXPECT_EQ(Get(*b, "/v1/cache/tree").body["nodes"], 0);
  EXPECT_EQ(Post(*b, "/v1/sessions/import?name=..bad", file, "", "application/octet-stream").status,
            400);
  EXPECT_EQ(Get(*b, "/v1/sessions/nobody/export").status, 404);

  // The CLI: one line, exit 2 (bad input), nothing stored.
  const std::string path = dir_ + "/truncated.kvs";
  WriteFile(path, file.substr(0, file.size() - 9));
  ProcessResult refused = Kvault({"session", "import", path, "--data-dir", Folder("d") + "/data",
                                  "--cache-dir", Folder("d") + "/blocks"});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
  EXPECT_NE(refused.err.find("session file"), std::string::npos) << refused.err;
  EXPECT_FALSE(std::filesystem::exists(Folder("d") + "/blocks"));
  ProcessResult listed = Kvault({"session", "list", "--data-dir", Folder("d") + "/data"});
  EXPECT_EQ(listed.out.find("trip"), std::string::npos) << listed.out;
}

}  // namespace
}  // namespace kvault::testing
