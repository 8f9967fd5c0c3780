// End-to-end tests of the dashboard: GET /dashboard serves the self-contained page, GET /
// redirects to it, the page is public while the data it polls needs the API key, and every
// route the page's script fetches exists and has the fields the page draws.
#include <map>
#include <regex>
#include <utility>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

const char* kKey = "dash-key";

// The element ids the page's script fills (dashboard_page.html).
const char* const kElementIds[] = {"status",   "api-key",       "banner", "tiers",   "prefixes",
                                   "requests", "conversations", "tree",   "sessions"};

struct Fetch {
  std::string method;
  std::string path;
};

// The calls api('GET', '/path') in the page's script: every request the page makes.
std::vector<Fetch> FetchesOf(const std::string& html) {
  const std::regex call(R"(api\('(GET|POST)', '([^']+)'\))");
  std::vector<Fetch> fetches;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), call); it != std::sregex_iterator();
       ++it) {
    fetches.push_back({(*it)[1].str(), (*it)[2].str()});
  }
  return fetches;
}

class DashboardTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> args) {
    args.insert(args.begin(), {"--model", TestModelPath(), "--block-size", "32"});
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }
  // Sends a request with `key` ("" = no Authorization header); httplib does not follow
  // redirects unless asked, so a 302 comes back as it is.
  static httplib::Result Send(const ServerProcess& server, const std::string& method,
                              const std::string& path, const std::string& key,
                              const std::string& body = "") {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(120));
    httplib::Headers headers;
    if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
    if (method == "GET") return client.Get(path, headers);
    return client.Post(path, headers, body, "application/json");
  }
  static Json JsonOf(const httplib::Result& result) {
    return result ? ParseJson(result->body).value_or(Json::object()) : Json::object();
  }
};

TEST_F(DashboardTest, ServesOneSelfContainedPageWithItsSections) {
  auto server = Start({});
  ASSERT_TRUE(server->ok());
  httplib::Result page = Send(*server, "GET", "/dashboard", "");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type").rfind("text/html", 0), 0u);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("default-src 'none'"),
            std::string::npos);
  const std::string& html = page->body;
  EXPECT_NE(html.find("<title>kvault dashboard</title>"), std::string::npos);
  for (const char* id : kElementIds) {
    EXPECT_NE(html.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  }
  // Nothing is loaded from elsewhere: the machine may have no internet.
  EXPECT_FALSE(std::regex_search(html, std::regex(R"(<(script|link|img|iframe)[^>]*(src|href)=)")));
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
}

TEST_F(DashboardTest, RootRedirectsToTheDashboard) {
  auto server = Start({});
  ASSERT_TRUE(server->ok());
  httplib::Result root = Send(*server, "GET", "/", "");
  ASSERT_TRUE(root);
  EXPECT_TRUE(root->status == 302 || root->status == 303) << root->status;
  EXPECT_EQ(root->get_header_value("Location"), "/dashboard");
}

TEST_F(DashboardTest, PageIsPublicWhileTheDataNeedsTheApiKey) {
  auto server = Start({"--api-key", kKey});
  ASSERT_TRUE(server->ok());
  EXPECT_EQ(Send(*server, "GET", "/dashboard", "")->status, 200);
  EXPECT_EQ(Send(*server, "GET", "/", "")->status, 302);
  EXPECT_EQ(Send(*server, "GET", "/v1/cache/stats", "")->status, 401);
  EXPECT_EQ(Send(*server, "GET", "/v1/cache/stats", "wrong")->status, 401);
  EXPECT_EQ(Send(*server, "GET", "/v1/cache/stats", kKey)->status, 200);
}

TEST_F(DashboardTest, EveryRouteThePageFetchesAnswersWithTheFieldsItDraws) {
  auto server = Start({"--api-key", kKey});
  ASSERT_TRUE(server->ok());
  // A conversation and a session, so the lists the page shows are not empty.
  const Json chat = {{"conversation_id", "dash"},
                     {"messages", {{{"role", "user"}, {"content", "Name three rivers."}}}},
                     {"max_tokens", 8},
                     {"temperature", 0}};
  ASSERT_EQ(Send(*server, "POST", "/v1/chat/completions", kKey, DumpJson(chat))->status, 200);
  ASSERT_EQ(Send(*server, "POST", "/v1/sessions/dash-session/save", kKey,
                 DumpJson({{"conversation_id", "dash"}}))
                ->status,
            200);

  const std::vector<Fetch> fetches = FetchesOf(Send(*server, "GET", "/dashboard", "")->body);
  ASSERT_GE(fetches.size(), 6u);
  std::map<std::string, Json> bodies;
  std::string metrics;
  for (const Fetch& fetch : fetches) {
    httplib::Result result = Send(*server, fetch.method, fetch.path, kKey);
    ASSERT_TRUE(result) << fetch.path;
    EXPECT_NE(result->status, 404) << fetch.method << " " << fetch.path;
    EXPECT_EQ(result->status, 200) << fetch.method << " " << fetch.path << ": " << result->body;
    if (fetch.path == "/metrics") metrics = result->body;
    bodies[fetch.path.substr(0, fetch.path.find('?'))] = JsonOf(result);
  }

  // The fields each section draws (a rename on the server would blank the page silently).
  const std::pair<const char*, const char*> fields[] = {
      {"/health", "/manager/running"},
      {"/health", "/manager/max_threads"},
      {"/health", "/cache/parked"},
      {"/health", "/scheduler/generated_tokens"},
      {"/v1/cache/stats", "/tiers/ram/budget_bytes"},
      {"/v1/cache/stats", "/tiers/ram/read_bandwidth_bytes_per_second"},
      {"/v1/cache/stats", "/tiers/disk/evictions"},
      {"/v1/cache/stats", "/disk_full"},
      {"/v1/cache/stats", "/corrupt_blocks"},
      {"/v1/cache/stats", "/safe_mode_fallbacks"},
      {"/v1/cache/stats", "/prefix_sources/none"},
      {"/v1/cache/stats", "/restored_tokens"},
      {"/v1/cache/stats", "/checkpoints"},
      {"/v1/cache/tree", "/top"},
      {"/v1/cache/tree", "/nodes"},
      {"/v1/conversations/list", "/conversations/0/conversation_id"},
      {"/v1/conversations/list", "/conversations/0/device_tokens"},
      {"/v1/conversations/list", "/conversations/0/dropped_turns"},
      {"/v1/conversations/list", "/conversations/0/idle_seconds"},
      {"/v1/conversations/list", "/stats/total_conversations"},
      {"/v1/sessions", "/data/0/name"},
      {"/v1/sessions", "/data/0/bytes"},
      {"/v1/sessions", "/data/0/created"},
  };
  for (const auto& [path, pointer] : fields) {
    EXPECT_TRUE(bodies[path].contains(Json::json_pointer(pointer))) << path << " " << pointer;
  }
  EXPECT_NE(metrics.find("kvault_time_to_first_token_seconds_sum "), std::string::npos);
  EXPECT_NE(metrics.find("kvault_time_to_first_token_seconds_count "), std::string::npos);
}

}  // namespace
}  // namespace kvault::testing
