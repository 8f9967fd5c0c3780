// End-to-end tests of the knowledge store over HTTP (/v1/knowledge): store, list, read a
// topic, search, per-key isolation, errors, and persistence across a restart.
#include <filesystem>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

// A JSON literal of the test.
Json JsonOf(const char* text) { return ParseJson(text).value(); }

struct Reply {
  int status = -1;
  Json body;
};

class KnowledgeTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> args) {
    args.insert(args.begin(), {"--model", TestModelPath()});
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }
  // Sends a request as the holder of `key` ("" = no Authorization header).
  static Reply Send(const ServerProcess& server, const std::string& method, const std::string& path,
                    const std::string& body = "", const std::string& key = "") {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(30));
    httplib::Headers headers;
    if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
    httplib::Result result = method == "GET" ? client.Get(path, headers)
                                             : client.Post(path, headers, body, "application/json");
    Reply reply;
    if (!result) return reply;
    reply.status = result->status;
    Result<Json> json = ParseJson(result->body);
    if (json.ok()) reply.body = std::move(*json);
    return reply;
  }
  static Reply Get(const ServerProcess& server, const std::string& path,
                   const std::string& key = "") {
    return Send(server, "GET", path, "", key);
  }
  static Reply Post(const ServerProcess& server, const std::string& path, const Json& body,
                    const std::string& key = "") {
    return Send(server, "POST", path, DumpJson(body), key);
  }
  static bool IsOpenAiError(const Reply& reply) {
    return reply.body.contains("error") && reply.body["error"].contains("message") &&
           reply.body["error"].contains("type");
  }
  // "topic/key" of each search result, best first.
  static std::vector<std::string> Hits(const Reply& reply) {
    std::vector<std::string> hits;
    if (!reply.body.contains("results")) return hits;
    for (const Json& r : reply.body["results"]) {
      hits.push_back(r["topic"].get<std::string>() + "/" + r["key"].get<std::string>());
    }
    return hits;
  }
};

TEST_F(KnowledgeTest, StoreListReadAndSearch) {
  auto server = Start({});
  ASSERT_TRUE(server->ok());
  Reply empty = Get(*server, "/v1/knowledge");
  ASSERT_EQ(empty.status, 200);
  EXPECT_EQ(empty.body, JsonOf(R"({"object":"list","data":[],
                                        "stats":{"topics":0,"facts":0}})"));

  Reply one = Post(*server, "/v1/knowledge/travel", {{"key", "city"}, {"value", "Lisbon"}});
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(one.body, JsonOf(R"({"object":"knowledge.facts","topic":"travel",
                                      "data":[{"key":"city","value":"Lisbon"}]})"));
  Reply many = Post(*server, "/v1/knowledge/health",
                    {{"facts",
                      {{{"key", "allergy"}, {"value", "penicillin"}},
                       {{"key", "doctor"}, {"value", "Dr Silva in Porto"}}}}});
  ASSERT_EQ(many.status, 200) << many.body;
  EXPECT_EQ(many.body["data"].size(), 2u);
  // Storing a key again replaces its value.
  ASSERT_EQ(
      Post(*server, "/v1/knowledge/travel", {{"key", "city"}, {"value", "Lisbon, Alfama"}}).status,
      200);

  Reply list = Get(*server, "/v1/knowledge");
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.body, JsonOf(R"({"object":"list",
      "data":[{"topic":"health","facts":2},{"topic":"travel","facts":1}],
      "stats":{"topics":2,"facts":3}})"));
  Reply topic = Get(*server, "/v1/knowledge?topic=health");
  ASSERT_EQ(topic.status, 200);
  EXPECT_EQ(topic.body, JsonOf(R"({"object":"list","topic":"health","data":[
      {"key":"allergy","value":"penicillin"},{"key":"doctor","value":"Dr Silva in Porto"}]})"));

  // A word of a value finds its fact; results carry topic, key, value and a positive score.
  Reply found = Get(*server, "/v1/knowledge/search?q=which%20city%3F%20Alfama&k=5");
  ASSERT_EQ(found.status, 200) << found.body;
  EXPECT_EQ(Hits(found), std::vector<std::string>{"travel/city"});
  EXPECT_EQ(found.body["results"][0]["value"], "Lisbon, Alfama");
  EXPECT_GT(found.body["results"][0]["score"].get<double>(), 0);
  EXPECT_EQ(Hits(Get(*server, "/v1/knowledge/search?q=Porto")),
            std::vector<std::string>{"health/doctor"});
  EXPECT_EQ(Hits(Get(*server, "/v1/knowledge/search?q=Porto%20penicillin&k=1")).size(), 1u);
  Reply none = Get(*server, "/v1/knowledge/search?q=Oslo");
  ASSERT_EQ(none.status, 200);
  EXPECT_EQ(none.body, JsonOf(R"({"results":[]})"));

  Reply health = Get(*server, "/health");
  EXPECT_EQ(health.body["knowledge"], JsonOf(R"({"topics":2,"facts":3})")) << health.body;
}

TEST_F(KnowledgeTest, EachApiKeySeesOnlyItsOwnFacts) {
  auto server = Start({"--api-key", "k1,k2"});
  ASSERT_TRUE(server->ok());
  ASSERT_EQ(
      Post(*server, "/v1/knowledge/travel", {{"key", "city"}, {"value", "Lisbon"}}, "k1").status,
      200);
  ASSERT_EQ(Post(*server, "/v1/knowledge/pets", {{"key", "dog"}, {"value", "Rex"}}, "k2").status,
            200);

  EXPECT_EQ(Get(*server, "/v1/knowledge", "k1").body["data"],
            JsonOf(R"([{"topic":"travel","facts":1}])"));
  EXPECT_EQ(Get(*server, "/v1/knowledge", "k2").body["data"],
            JsonOf(R"([{"topic":"pets","facts":1}])"));
  EXPECT_EQ(Get(*server, "/v1/knowledge?topic=travel", "k1").status, 200);
  EXPECT_EQ(Get(*server, "/v1/knowledge?topic=travel", "k2").status, 404);
  EXPECT_EQ(Hits(Get(*server, "/v1/knowledge/search?q=Lisbon", "k1")),
            std::vector<std::string>{"travel/city"});
  EXPECT_TRUE(Hits(Get(*server, "/v1/knowledge/search?q=Lisbon", "k2")).empty());
  EXPECT_TRUE(Hits(Get(*server, "/v1/knowledge/search?q=Rex", "k1")).empty());
  // The same topic and key under two keys are two facts.
  ASSERT_EQ(
      Post(*server, "/v1/knowledge/travel", {{"key", "city"}, {"value", "Oslo"}}, "k2").status,
      200);
  EXPECT_EQ(Get(*server, "/v1/knowledge?topic=travel", "k1").body["data"][0]["value"], "Lisbon");
  EXPECT_EQ(Get(*server, "/v1/knowledge?topic=travel", "k2").body["data"][0]["value"], "Oslo");

  for (const std::string& key : {std::string(), std::string("wrong")}) {
    EXPECT_EQ(Get(*server, "/v1/knowledge", key).status, 401);
    EXPECT_EQ(Get(*server, "/v1/knowledge/search?q=Lisbon", key).status, 401);
    EXPECT_EQ(Post(*server, "/v1/knowledge/t", {{"key", "k"}, {"value", "v"}}, key).status, 401);
  }
  // /health counts every key's facts.
  EXPECT_EQ(Get(*server, "/health").body["knowledge"], JsonOf(R"({"topics":3,"facts":3})"));
}

TEST_F(KnowledgeTest, BadRequestsGet400AndUnknownTopics404) {
  auto server = Start({});
  ASSERT_TRUE(server->ok());
  const std::vector<std::string> bad_bodies = {
      "",
      "{not json",
      "[]",
      R"({})",
      R"({"key":"k"})",
      R"({"value":"v"})",
      R"({"key":"","value":"v"})",
      R"({"key":"k","value":""})",
      R"({"key":7,"value":"v"})",
      R"({"key":"k","value":["v"]})",
      R"({"facts":[]})",
      R"({"facts":{"key":"k","value":"v"}})",
      R"({"facts":[{"key":"k","value":"v"},{"key":"k2"}]})",
      R"({"facts":["kv"]})",
      R"({"facts":[{"key":"k","value":"v"}],"key":"k","value":"v"})",
  };
  for (const std::string& body : bad_bodies) {
    Reply reply = Send(*server, "POST", "/v1/knowledge/t", body);
    EXPECT_EQ(reply.status, 400) << body;
    EXPECT_TRUE(IsOpenAiError(reply)) << body << " -> " << reply.body;
  }
  const Json fact = {{"key", "k"}, {"value", "v"}};
  for (const std::string& topic : {std::string(), std::string(129, 't'), std::string("a%2Fb"),
                                   std::string("tab%09"), std::string("%FF")}) {
    Reply reply = Post(*server, "/v1/knowledge/" + topic, fact);
    EXPECT_EQ(reply.status, 400) << topic;
    EXPECT_TRUE(IsOpenAiError(reply)) << topic;
  }
  EXPECT_EQ(Post(*server, "/v1/knowledge/" + std::string(128, 't'), fact).status, 200);
  // Nothing of the rejected requests was stored (a bad fact in a list stores none).
  EXPECT_EQ(Get(*server, "/v1/knowledge").body["stats"]["facts"], 1);

  for (const char* path :
       {"/v1/knowledge/search", "/v1/knowledge/search?q=", "/v1/knowledge/search?q=x&k=0",
        "/v1/knowledge/search?q=x&k=101", "/v1/knowledge/search?q=x&k=ten",
        "/v1/knowledge?topic=", "/v1/knowledge?topic=a%2Fb"}) {
    Reply reply = Get(*server, path);
    EXPECT_EQ(reply.status, 400) << path;
    EXPECT_TRUE(IsOpenAiError(reply)) << path;
  }
  Reply missing = Get(*server, "/v1/knowledge?topic=nothing-here");
  EXPECT_EQ(missing.status, 404);
  EXPECT_TRUE(IsOpenAiError(missing)) << missing.body;
  // A query without words is not an error: it finds nothing.
  EXPECT_EQ(Get(*server, "/v1/knowledge/search?q=%3F%3F").body, JsonOf(R"({"results":[]})"));
}

TEST_F(KnowledgeTest, FactsSurviveARestartWithTheSameDataDir) {
  const std::string root = (std::filesystem::temp_directory_path() /
                            ("kvault_knowledge_test_" + std::to_string(::getpid())))
                               .string();
  std::filesystem::remove_all(root);
  const std::vector<std::string> dirs = {"--data-dir", root + "/data", "--cache-dir",
                                         root + "/blocks"};
  {
    auto server = Start(dirs);
    ASSERT_TRUE(server->ok());
    ASSERT_EQ(Post(*server, "/v1/knowledge/travel", {{"key", "city"}, {"value", "Lisbon"}}).status,
              200);
    EXPECT_EQ(server->Terminate(), 0);
  }
  EXPECT_TRUE(std::filesystem::exists(root + "/data/knowledge.db"));
  auto restarted = Start(dirs);
  ASSERT_TRUE(restarted->ok());
  EXPECT_EQ(Get(*restarted, "/v1/knowledge?topic=travel").body["data"],
            JsonOf(R"([{"key":"city","value":"Lisbon"}])"));
  EXPECT_EQ(Hits(Get(*restarted, "/v1/knowledge/search?q=Lisbon")),
            std::vector<std::string>{"travel/city"});
  restarted.reset();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace kvault::testing
