// A hostile corpus across every POST route and the path parameters of the others: truncated
// and deeply nested JSON, wrong types, huge, negative and non-finite numbers, NUL bytes and
// invalid UTF-8, path traversal in session names and knowledge topics, very long ids. Every
// answer must be a 2xx or an OpenAI-shaped 4xx (never a 5xx, a hang or a dropped
// connection), /health must answer after each route's batch, and no file may appear outside
// the server's folders.
#include <filesystem>
#include <string>
#include <vector>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

std::vector<std::string> HostileBodies() {
  std::vector<std::string> bodies = {
      "",
      "{",
      "{\"messages\": [",
      "[]",
      "null",
      "42",
      "\"text\"",
      std::string(100000, '[') + std::string(100000, ']'),
      "{\"a\":" + std::string(5000, '{') + std::string(5000, '}') + "}",
      "{\"messages\": 5}",
      "{\"messages\": [{\"role\": 7, \"content\": []}]}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": -5}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 1e300}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": NaN}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": \"hot\"}",
      "{\"conversation_id\": 12, \"query\": {}, \"k\": \"many\"}",
      "{\"conversation_id\": \"" + std::string(100000, 'x') + "\"}",
      "{\"conversation_id\": \"../../etc/passwd\", \"max_tokens\": 2, \"messages\": "
      "[{\"role\": \"user\", \"content\": \"x\"}]}",
      std::string("{\"max_tokens\": 2, \"messages\": [{\"role\": \"user\", \"content\": "
                  "\"a\0b\"}]}",
                  67),
      "{\"max_tokens\": 2, \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\xc3\"}]}",
      "{\"facts\": [{\"key\": 5}], \"key\": [], \"value\": {}}",
      "{\"prompt\": [1, 2, 3], \"max_tokens\": 0}",
      "{\"history\": \"destroy\", \"messages\": []}",
      "{\"pin\": \"yes\", \"recall\": 3, \"stream\": \"maybe\"}",
  };
  return bodies;
}

bool IsOpenAiError(const std::string& body) {
  Result<Json> json = ParseJson(body);
  return json.ok() && json->is_object() && json->contains("error") &&
         (*json)["error"].contains("message") && (*json)["error"].contains("code");
}

TEST(HostileTest, EveryRouteAnswersEveryHostileRequestWithAFourHundredOrSuccess) {
  const std::string dir = std::filesystem::temp_directory_path() / "kvault_hostile_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/outside");
  ServerProcess server({"--model", TestModelPath(), "--cache-dir", dir + "/blocks", "--data-dir",
                        dir + "/data", "--max-body-mb", "2"});
  ASSERT_TRUE(server.ok()) << server.log();
  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(std::chrono::seconds(60));
  const std::vector<std::string> posts = {
      "/v1/chat/completions",     "/v1/completions",           "/v1/conversations/append",
      "/v1/conversations/search", "/v1/conversations/end",     "/v1/conversations/list",
      "/v1/knowledge/topic",      "/v1/knowledge/..%2F..%2Fx", "/v1/sessions/s1/save",
      "/v1/sessions/s1/load",     "/v1/sessions/..%2Fx/save",  "/v1/sessions/s1/clear",
  };
  int requests = 0;
  for (const std::string& path : posts) {
    for (const std::string& body : HostileBodies()) {
      for (const char* type : {"application/json", "text/plain"}) {
        httplib::Result result = client.Post(path, body, type);
        ++requests;
        ASSERT_TRUE(result) << path << " dropped the connection for " << body.substr(0, 80);
        EXPECT_LT(result->status, 500) << path << " " << body.substr(0, 80) << ": " << result->body;
        if (result->status >= 400) {
          EXPECT_TRUE(IsOpenAiError(result->body)) << path << ": " << result->body.substr(0, 200);
        }
      }
    }
    httplib::Result health = client.Get("/health");
    ASSERT_TRUE(health && health->status == 200) << "after " << path;
  }
  // Path parameters of the GET and DELETE routes.
  const std::vector<std::string> names = {
      "..%2F..%2Fetc%2Fpasswd", std::string(300, 'n'), "%00", "%ff%fe", ".hidden", "a%2Fb"};
  for (const std::string& name : names) {
    for (const std::string& path :
         {"/v1/sessions/" + name, "/v1/conversations/" + name + "/history",
          "/v1/knowledge?topic=" + name, "/v1/cache/tree?limit=" + name,
          "/v1/knowledge/search?q=" + name + "&k=-1"}) {
      httplib::Result result = client.Get(path);
      ++requests;
      ASSERT_TRUE(result) << path;
      EXPECT_LT(result->status, 500) << path << ": " << result->body;
    }
    httplib::Result deleted = client.Delete("/v1/sessions/" + name);
    ++requests;
    ASSERT_TRUE(deleted) << name;
    EXPECT_LT(deleted->status, 500) << name;
  }
  EXPECT_GE(requests, 500);
  EXPECT_EQ(client.Get("/health")->status, 200);
  // Nothing was written outside the server's two folders.
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == "blocks" || name == "data" || name == "outside") << name;
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir + "/outside"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/x"));
  EXPECT_EQ(server.Terminate(), 0);
  std::filesystem::remove_all(dir);
}

// 50 MB strings under the default body limit (64 MB): parsed, then refused from their size
// before anything is tokenized, on every route that takes text. The size check refuses only
// what surely cannot fit (bytes / twice the longest token piece), so a conversation here holds
// 65,536 tokens; with the default 10M a 50 MB message may fit, and is tokenized and stored
// (at ~1 MB/s of pathological text on 2 cores, ~4 MB/s of prose).
TEST(HostileTest, FiftyMegabyteStringsAreRefusedWithAFourHundred) {
  ServerProcess server({"--model", TestModelPath(), "--cache-size", "65536"});
  ASSERT_TRUE(server.ok()) << server.log();
  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(std::chrono::seconds(120));
  const std::string huge(50 << 20, 'w');
  const Json message = {{{"role", "user"}, {"content", huge}}};
  const std::vector<std::pair<std::string, Json>> requests = {
      {"/v1/chat/completions", {{"messages", message}, {"max_tokens", 2}}},
      {"/v1/chat/completions",
       {{"conversation_id", "big"}, {"messages", message}, {"max_tokens", 2}, {"stream", true}}},
      {"/v1/completions", {{"prompt", huge}, {"max_tokens", 2}}},
      {"/v1/conversations/append", {{"conversation_id", "big"}, {"messages", message}}},
      {"/v1/conversations/search", {{"conversation_id", "big"}, {"query", huge}}},
  };
  for (const auto& [path, body] : requests) {
    const auto start = std::chrono::steady_clock::now();
    httplib::Result result = client.Post(path, DumpJson(body), "application/json");
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(result) << path;
    EXPECT_GE(result->status, 400) << path;
    EXPECT_LT(result->status, 500) << path << ": " << result->body.substr(0, 300);
    EXPECT_TRUE(IsOpenAiError(result->body)) << path << ": " << result->body.substr(0, 300);
    EXPECT_LT(seconds, 30) << path << " took " << seconds << " s to refuse";
  }
  EXPECT_EQ(client.Get("/health")->status, 200);
  httplib::Result history = client.Get("/v1/conversations/big/history");
  ASSERT_TRUE(history);
  EXPECT_EQ(history->status, 404) << "a refused request kept a conversation: " << history->body;
  EXPECT_EQ(server.Terminate(), 0);
}

}  // namespace
}  // namespace kvault::testing
