// End-to-end tests of `kvault serve` over real HTTP: admission, disconnects, API keys,
// hostile input, configuration precedence, shutdown.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "tests/integration/server_process.h"
#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string ChatBody(const std::string& conversation_id, int max_tokens, bool stream = false) {
  Json body = {{"messages", {{{"role", "user"}, {"content", "Tell me a long story."}}}},
               {"max_tokens", max_tokens},
               {"temperature", 0},
               {"stream", stream},
               {"conversation_id", conversation_id}};
  return DumpJson(body);
}

class ServerTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> args,
                                       std::vector<std::string> env = {}) {
    args.insert(args.begin(), {"--model", TestModelPath()});
    auto server = std::make_unique<ServerProcess>(args, env);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }
  static httplib::Client Client(const ServerProcess& server) {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(120));
    return client;
  }
  static bool IsOpenAiError(const std::string& body) {
    Result<Json> json = ParseJson(body);
    return json.ok() && json->contains("error") && (*json)["error"].contains("message") &&
           (*json)["error"].contains("type") && (*json)["error"].contains("code");
  }
};

TEST_F(ServerTest, SixLongRequestsWithTwoThreadsAndTwoQueuedRejectExactlyTwo) {
  auto server = Start({"--conversation-threads", "2", "--conversation-queue", "2"});
  ASSERT_TRUE(server->ok());
  std::atomic<int> ready{0};
  std::vector<int> statuses(6, 0);
  std::vector<std::string> bodies(6);
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      httplib::Client client = Client(*server);
      ++ready;
      while (ready.load() < 6) std::this_thread::yield();
      httplib::Result result = client.Post(
          "/v1/chat/completions", ChatBody("long-" + std::to_string(i), 600), "application/json");
      statuses[i] = result ? result->status : -1;
      bodies[i] = result ? result->body : "";
    });
  }
  for (std::thread& t : threads) t.join();
  int ok = 0;
  int rejected = 0;
  for (int i = 0; i < 6; ++i) {
    if (statuses[i] == 200) {
      ++ok;
      EXPECT_EQ((*ParseJson(bodies[i]))["usage"]["completion_tokens"], 600) << bodies[i];
    } else if (statuses[i] == 503) {
      ++rejected;
      EXPECT_TRUE(IsOpenAiError(bodies[i])) << bodies[i];
    }
  }
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(rejected, 2);
  EXPECT_EQ(server->Terminate(), 0);
}

TEST_F(ServerTest, DisconnectAfterThreeChunksFreesTheThreadAndIsCounted) {
  auto server = Start({"--conversation-threads", "1", "--conversation-queue", "1"});
  ASSERT_TRUE(server->ok());
  httplib::Client client = Client(*server);
  int chunks = 0;
  httplib::Result streamed = client.Post("/v1/chat/completions", httplib::Headers{},
                                         ChatBody("dropped", 4000, /*stream=*/true),
                                         "application/json", [&](const char* data, size_t length) {
                                           for (size_t i = 0; i + 5 < length; ++i) {
                                             if (std::string_view(data + i, 6) == "data: ")
                                               ++chunks;
                                           }
                                           return chunks < 3;  // hang up after three events
                                         });
  EXPECT_GE(chunks, 3);
  // The only thread must be free again soon: the next request waits in the queue for it,
  // and would wait for all 4000 tokens (seconds) if the dropped stream kept generating.
  const auto start = Clock::now();
  httplib::Client second = Client(*server);
  httplib::Result next =
      second.Post("/v1/chat/completions", ChatBody("next", 1), "application/json");
  const double waited = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200) << next->body;
  EXPECT_LT(waited, 1.0);
  httplib::Result metrics = second.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("kvault_cancelled_requests_total 1\n"), std::string::npos)
      << metrics->body;
  EXPECT_EQ(server->Terminate(), 0);
}

TEST_F(ServerTest, ApiKeysIsolateConversations) {
  auto server = Start({"--api-key", "alpha,beta"});
  ASSERT_TRUE(server->ok());
  httplib::Client client = Client(*server);
  const httplib::Headers alpha = {{"Authorization", "Bearer alpha"}};
  const httplib::Headers beta = {{"Authorization", "Bearer beta"}};

  // No key or a wrong key: 401 everywhere but /health.
  EXPECT_EQ(client.Get("/health")->status, 200);
  for (const char* path : {"/v1/models", "/metrics"}) {
    EXPECT_EQ(client.Get(path)->status, 401) << path;
  }
  httplib::Result anonymous =
      client.Post("/v1/chat/completions", ChatBody("x", 2), "application/json");
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_TRUE(IsOpenAiError(anonymous->body));
  EXPECT_EQ(
      client.Post("/v1/conversations/list", httplib::Headers{{"Authorization", "Bearer nope"}})
          ->status,
      401);

  ASSERT_EQ(client.Post("/v1/chat/completions", alpha, ChatBody("secret-a", 2), "application/json")
                ->status,
            200);
  ASSERT_EQ(client.Post("/v1/chat/completions", beta, ChatBody("secret-b", 2), "application/json")
                ->status,
            200);
  auto ids = [&](const httplib::Headers& headers) {
    Json listed = *ParseJson(client.Post("/v1/conversations/list", headers)->body);
    std::vector<std::string> out;
    for (const Json& c : listed["conversations"]) out.push_back(c["conversation_id"]);
    return out;
  };
  EXPECT_EQ(ids(alpha), std::vector<std::string>{"secret-a"});
  EXPECT_EQ(ids(beta), std::vector<std::string>{"secret-b"});
  // beta cannot end alpha's conversation, even knowing its id.
  httplib::Result cross = client.Post("/v1/conversations/end", beta,
                                      R"({"conversation_id": "secret-a"})", "application/json");
  EXPECT_EQ(cross->status, 404);
  EXPECT_EQ(ids(alpha), std::vector<std::string>{"secret-a"});
  EXPECT_EQ(client
                .Post("/v1/conversations/end", alpha, R"({"conversation_id": "secret-a"})",
                      "application/json")
                ->status,
            200);
  EXPECT_TRUE(ids(alpha).empty());
  EXPECT_EQ(ids(beta), std::vector<std::string>{"secret-b"});
  EXPECT_EQ(server->Terminate(), 0);
}

// 200 malformed or hostile bodies: each gets a 4xx OpenAI-shaped error; the server keeps
// serving throughout.
TEST_F(ServerTest, HostileBodiesGetFourHundredsAndTheServerKeepsServing) {
  auto server = Start({"--max-body-mb", "1"});
  ASSERT_TRUE(server->ok());
  std::vector<std::string> bodies = {
      "",
      "{",
      "}",
      "null",
      "[]",
      "\"text\"",
      "42",
      "true",
      "{\"messages\": null}",
      "{\"messages\": {}}",
      "{\"messages\": [1, 2]}",
      "{\"messages\": [[]]}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"max_tokens\": 1e400}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"max_tokens\": -1}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"max_tokens\": "
      "99999999999999999999999999}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"temperature\": NaN}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"top_p\": -0.5}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"seed\": \"x\"}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"stop\": {\"a\": 1}}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"n\": 5}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"logit_bias\": {\"1\": 1e9}}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"ok\"}], \"stream\": 1}",
      "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000b\"}]}",
      std::string(1000, '[') + std::string(1000, ']'),
      "{\"a\":" + std::string(5000, '[') + "1" + std::string(5000, ']') + "}",
      std::string(2 << 20, 'x'),  // over --max-body-mb: 413
  };
  // Deterministic random garbage and truncations of a valid body fill the set to 200.
  const std::string valid = ChatBody("fuzz", 2);
  std::mt19937 rng(1234);
  while (bodies.size() < 200) {
    std::string body = valid;
    const int kind = static_cast<int>(bodies.size() % 4);
    if (kind == 0) {
      body = body.substr(0, rng() % (body.size() - 1));  // truncated
    } else if (kind == 1) {
      for (int flips = 0; flips < 3; ++flips) body[rng() % body.size()] = static_cast<char>(rng());
      if (ParseJson(body).ok()) continue;  // still valid JSON: not hostile enough
    } else if (kind == 2) {
      body.assign(64 + rng() % 512, '\0');
      for (char& c : body) c = static_cast<char>(rng());
    } else {
      body = "{\"messages\": [{\"role\": \"user\", \"content\": " +
             std::to_string(static_cast<int>(rng())) + "}]}";
    }
    bodies.push_back(body);
  }
  httplib::Client client = Client(*server);
  int n_checked = 0;
  for (const std::string& body : bodies) {
    httplib::Result result = client.Post("/v1/chat/completions", body, "application/json");
    ASSERT_TRUE(result) << "no response; server log:\n" << server->log();
    EXPECT_GE(result->status, 400) << body.substr(0, 80);
    EXPECT_LT(result->status, 500) << body.substr(0, 80);
    EXPECT_TRUE(IsOpenAiError(result->body)) << result->body.substr(0, 200);
    ++n_checked;
  }
  EXPECT_EQ(n_checked, 200);
  EXPECT_EQ(client.Get("/health")->status, 200);
  EXPECT_EQ(client.Post("/v1/chat/completions", valid, "application/json")->status, 200);
  EXPECT_EQ(server->Terminate(), 0);
}

TEST_F(ServerTest, EndWaitsForTheRunningGenerationAndUnknownIsNotFound) {
  auto server = Start({});
  ASSERT_TRUE(server->ok());
  httplib::Client client = Client(*server);
  std::thread generation([&] {
    httplib::Client other = Client(*server);
    EXPECT_EQ(other.Post("/v1/chat/completions", ChatBody("busy", 300), "application/json")->status,
              200);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  httplib::Result ended =
      client.Post("/v1/conversations/end", R"({"conversation_id": "busy"})", "application/json");
  generation.join();
  ASSERT_TRUE(ended);
  EXPECT_EQ(ended->status, 200) << ended->body;
  EXPECT_EQ(
      client.Post("/v1/conversations/end", R"({"conversation_id": "busy"})", "application/json")
          ->status,
      404);
  EXPECT_EQ(server->Terminate(), 0);
}

TEST_F(ServerTest, FlagsWinOverEnvironmentWhichWinsOverTheConfigFile) {
  const std::string config =
      (std::filesystem::temp_directory_path() / "kvault_server_test_config.json").string();
  std::ofstream(config) << R"({"window": 512, "cache_size": 70000})";
  auto window_of = [](const ServerProcess& server) {
    httplib::Client client("127.0.0.1", server.port());
    Json models = *ParseJson(client.Get("/v1/models")->body);
    return std::make_pair(models["data"][0]["window"].get<int>(),
                          models["data"][0]["max_model_len"].get<int64_t>());
  };
  {
    auto server = Start({"--config", config});
    EXPECT_EQ(window_of(*server), std::make_pair(512, int64_t{70000}));
  }
  {
    auto server = Start({"--config", config}, {"KVAULT_WINDOW=768"});
    EXPECT_EQ(window_of(*server), std::make_pair(768, int64_t{70000}));
  }
  {
    auto server = Start({"--config", config, "--window", "1024"}, {"KVAULT_WINDOW=768"});
    EXPECT_EQ(window_of(*server), std::make_pair(1024, int64_t{70000}));
  }
  std::ofstream(config) << R"({"no_such_option": 1})";
  ProcessResult bad =
      RunProcess({KvaultBinary(), "serve", "--model", TestModelPath(), "--config", config});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("no_such_option"), std::string::npos) << bad.err;
  std::filesystem::remove(config);
}

TEST_F(ServerTest, BadFlagsExitTwoWithOneLine) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--no-such-flag"},
                                             {"--window", "abc"},
                                             {"--kv-cache-dtype", "f8"},
                                             {"--conversation-threads", "0"},
                                             {"--log-format", "xml"}}) {
    std::vector<std::string> argv = {KvaultBinary(), "serve", "--model", TestModelPath()};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessResult result = RunProcess(argv);
    EXPECT_EQ(result.exit_code, 2) << args[0] << ": " << result.err;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
  }
  ProcessResult missing = RunProcess({KvaultBinary(), "serve", "--model", "/nonexistent.gguf"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("/nonexistent.gguf"), std::string::npos);
}

// Connections that send their headers one byte at a time must not starve the others: with
// 300 of them open (more than the requests' threads), /health still answers.
TEST_F(ServerTest, SlowConnectionsDoNotStarveHealth) {
  auto server = Start({"--conversation-threads", "1", "--conversation-queue", "4"});
  ASSERT_TRUE(server->ok());
  std::vector<int> sockets;
  for (int i = 0; i < 300; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(server->port()));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    const std::string start = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    ASSERT_GT(::send(fd, start.data(), start.size(), MSG_NOSIGNAL), 0);
    sockets.push_back(fd);
  }
  std::atomic<bool> stop{false};
  std::thread trickle([&] {  // one more header byte per connection every second
    while (!stop) {
      for (int fd : sockets) ::send(fd, "a", 1, MSG_NOSIGNAL);
      for (int i = 0; i < 10 && !stop; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(2));
  httplib::Client client("127.0.0.1", server->port());
  client.set_connection_timeout(std::chrono::seconds(3));
  client.set_read_timeout(std::chrono::seconds(3));
  int answered = 0;
  for (int i = 0; i < 3; ++i) {
    httplib::Result health = client.Get("/health");
    answered += health && health->status == 200 ? 1 : 0;
  }
  stop = true;
  trickle.join();
  EXPECT_EQ(answered, 3) << "/health did not answer while 300 slow connections were open";
  for (int fd : sockets) ::close(fd);
  EXPECT_EQ(server->Terminate(), 0);
}

// A prompt that cannot fit is refused from its size, before it is tokenized (a 30 MB prompt
// used to hold a conversation thread for seconds first), stateless or kept, streamed or not.
TEST_F(ServerTest, AnOversizedPromptIsRefusedBeforeItIsTokenized) {
  auto server = Start({"--max-body-mb", "64", "--conversation-threads", "1"});
  ASSERT_TRUE(server->ok());
  httplib::Client client = Client(*server);
  const std::string huge(30 << 20, 'a');
  for (const bool kept : {false, true}) {
    for (const bool stream : {false, true}) {
      Json body = {{"messages", {{{"role", "user"}, {"content", huge}}}},
                   {"max_tokens", 2},
                   {"stream", stream}};
      if (kept) body["conversation_id"] = "big";
      httplib::Result result =
          client.Post("/v1/chat/completions", DumpJson(body), "application/json");
      ASSERT_TRUE(result);
      EXPECT_EQ(result->status, 400) << kept << stream;
      Result<Json> error = ParseJson(result->body);
      ASSERT_TRUE(error.ok()) << result->body.substr(0, 200);
      EXPECT_EQ((*error)["error"]["code"], "context_length_exceeded");
      EXPECT_NE((*error)["error"]["message"].get<std::string>().find("at least"), std::string::npos)
          << result->body;
    }
  }
  // Nothing was stored for the refused kept conversation.
  Json listed = *ParseJson(client.Post("/v1/conversations/list", "", "application/json")->body);
  EXPECT_TRUE(listed["conversations"].empty()) << listed.dump();
  EXPECT_EQ(client.Get("/health")->status, 200);
}

// The value of an unlabelled or labelled series in a Prometheus text export; NaN if absent.
double MetricValue(const std::string& text, const std::string& series) {
  const std::string line = "\n" + series + " ";
  const size_t at = text.find(line);
  if (at == std::string::npos) return std::nan("");
  return std::strtod(text.c_str() + at + line.size(), nullptr);
}

// Two stateless requests with one long system prompt: the second reuses the first's prefix.
// /v1/cache/stats sums it up as zKV does, and /metrics gives the same hit rate.
TEST_F(ServerTest, CacheStatsAndMetricsGiveThePrefixHitRate) {
  auto server = Start({"--block-size", "32", "--conversation-threads", "1"});
  ASSERT_TRUE(server->ok());
  httplib::Client client = Client(*server);
  const std::string system =
      "You are the archivist of a long-running research station. You remember every log entry "
      "the crew dictates, answer questions about them precisely, and never invent entries. Each "
      "entry has a date, an author, a weather note and a short description of the work done. "
      "When asked for a summary, list the entries in order with their authors.";
  auto chat = [&](const std::string& system_prompt, const std::string& user) -> int64_t {
    Json messages = Json::array();
    if (!system_prompt.empty())
      messages.push_back({{"role", "system"}, {"content", system_prompt}});
    messages.push_back({{"role", "user"}, {"content", user}});
    const Json body = {{"messages", messages}, {"max_tokens", 4}, {"temperature", 0}};
    httplib::Result result =
        client.Post("/v1/chat/completions", DumpJson(body), "application/json");
    EXPECT_TRUE(result);
    if (!result) return -1;
    EXPECT_EQ(result->status, 200) << result->body;
    if (result->status != 200) return -1;
    return (*ParseJson(result->body))["usage"]["prompt_tokens_details"]["cached_tokens"]
        .get<int64_t>();
  };
  int64_t cached[2] = {-1, -1};
  const char* users[2] = {"What did Mara do on Monday?", "Summarize the log for Ivo."};
  for (int i = 0; i < 2; ++i) cached[i] = chat(system, users[i]);
  EXPECT_EQ(cached[0], 0);
  EXPECT_GE(cached[1], 32);  // at least one block of the system prompt

  httplib::Result stats_result = client.Get("/v1/cache/stats");
  ASSERT_TRUE(stats_result);
  ASSERT_EQ(stats_result->status, 200) << stats_result->body;
  const Json stats = *ParseJson(stats_result->body);
  const int64_t hits = stats["prompt_cache_hits"].get<int64_t>();
  const int64_t misses = stats["prompt_cache_misses"].get<int64_t>();
  EXPECT_EQ(hits, 1) << stats.dump();
  EXPECT_EQ(misses, 1) << stats.dump();
  const double hit_rate = stats["hit_rate"].get<double>();
  EXPECT_DOUBLE_EQ(hit_rate, static_cast<double>(hits) / static_cast<double>(hits + misses));
  EXPECT_DOUBLE_EQ(hit_rate, 0.5);
  // The summary agrees with the detailed fields it sums.
  int64_t sources = 0;
  for (const auto& [source, n] : stats["prefix_sources"].items()) {
    if (source != "none") sources += n.get<int64_t>();
  }
  EXPECT_EQ(hits, sources);
  EXPECT_EQ(misses, stats["prefix_sources"]["none"].get<int64_t>());
  const int64_t used = stats["used_size"].get<int64_t>();
  const int64_t total = stats["total_size"].get<int64_t>();
  EXPECT_GT(used, 0);
  EXPECT_GE(total, used);
  int64_t budgets = 0;
  int64_t bytes = 0;
  int64_t evictions = 0;
  for (const auto& [name, tier] : stats["tiers"].items()) {
    budgets += tier["budget_bytes"].get<int64_t>();
    bytes += tier["bytes"].get<int64_t>();
    evictions += tier["evictions"].get<int64_t>();
  }
  EXPECT_EQ(total, budgets);
  EXPECT_EQ(used, bytes);
  EXPECT_EQ(stats["evictions"].get<int64_t>(), evictions);
  EXPECT_TRUE(stats.contains("block_size"));  // the existing fields stay
  EXPECT_TRUE(stats.contains("prefix_sources"));

  httplib::Result metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  const std::string& text = metrics->body;
  EXPECT_NE(text.find("# TYPE kvault_prefix_hit_rate gauge\n"), std::string::npos) << text;
  EXPECT_DOUBLE_EQ(MetricValue(text, "kvault_prefix_hit_rate"), hit_rate) << text;
  EXPECT_NE(text.find("# TYPE kvault_tier_hit_rate gauge\n"), std::string::npos) << text;
  for (const auto& [name, tier] : stats["tiers"].items()) {
    const int64_t tier_hits = tier["hits"].get<int64_t>();
    const int64_t tier_misses = tier["misses"].get<int64_t>();
    const double expected =
        tier_hits + tier_misses == 0
            ? 0
            : static_cast<double>(tier_hits) / static_cast<double>(tier_hits + tier_misses);
    EXPECT_DOUBLE_EQ(MetricValue(text, "kvault_tier_hit_rate{tier=\"" + name + "\"}"), expected)
        << name << "\n"
        << text;
  }

  // Two unrelated requests take the device's sequences; the system prompt then comes back
  // from the RAM tier, whose hit rate is no longer 0.
  for (int i = 0; i < 2; ++i) {
    chat("", "Tell me something unrelated about volcanoes, number " + std::to_string(i) + ".");
  }
  EXPECT_GE(chat(system, "Which entries mention the weather?"), 32);
  const Json later = *ParseJson(client.Get("/v1/cache/stats")->body);
  EXPECT_GE(later["prefix_sources"]["ram"].get<int64_t>(), 1) << later.dump();
  const Json& ram = later["tiers"]["ram"];
  const int64_t ram_hits = ram["hits"].get<int64_t>();
  ASSERT_GE(ram_hits, 1) << later.dump();
  const std::string later_text = client.Get("/metrics")->body;
  EXPECT_DOUBLE_EQ(
      MetricValue(later_text, "kvault_tier_hit_rate{tier=\"ram\"}"),
      static_cast<double>(ram_hits) / static_cast<double>(ram_hits + ram["misses"].get<int64_t>()))
      << later_text;
  EXPECT_GT(MetricValue(later_text, "kvault_tier_hit_rate{tier=\"ram\"}"), 0) << later_text;
  EXPECT_DOUBLE_EQ(MetricValue(later_text, "kvault_prefix_hit_rate"),
                   later["hit_rate"].get<double>());
  EXPECT_EQ(later["prompt_cache_hits"].get<int64_t>() + later["prompt_cache_misses"].get<int64_t>(),
            5);
  EXPECT_EQ(server->Terminate(), 0);
}

// Issue 15, items 8 and 11: KV3D's config sections; KeSSie's conversation list stats.

TEST_F(ServerTest, Kv3dConfigSectionsSetTheFlagsTheyMapTo) {
  const std::string config =
      (std::filesystem::temp_directory_path() / "kvault_server_test_kv3d.json").string();
  // KV3D's sections, less the keys kvault refuses, beside one of kvault's own flags.
  std::ofstream(config) << R"({
    "window": 512,
    "server": {"host": "127.0.0.1", "threads": 2, "api_key": "kv3d-key"},
    "cache": {"ram_warm_mb": 96, "ssd_cold_path": ""}
  })";
  auto server = Start({"--config", config});
  ASSERT_TRUE(server->ok());
  httplib::Client client = Client(*server);
  EXPECT_EQ(client.Get("/v1/cache/stats")->status, 401);  // server.api_key
  const httplib::Headers key = {{"Authorization", "Bearer kv3d-key"}};
  httplib::Result stats = client.Get("/v1/cache/stats", key);
  ASSERT_EQ(stats->status, 200) << stats->body;
  const Json tiers = (*ParseJson(stats->body))["tiers"];
  EXPECT_EQ(tiers["ram"]["budget_bytes"].get<int64_t>(), int64_t{96} << 20);  // ram_warm_mb
  EXPECT_FALSE(tiers.contains("disk")) << tiers.dump();  // ssd_cold_path "" = no cold tier
  const Json models = *ParseJson(client.Get("/v1/models", key)->body);
  EXPECT_EQ(models["data"][0]["window"].get<int>(), 512);
  EXPECT_EQ(server->Terminate(), 0);
  std::filesystem::remove(config);
}

TEST_F(ServerTest, ConversationsListCountsHeldConversationsApartFromRunningRequests) {
  auto server = Start({"--conversation-threads", "2"});
  ASSERT_TRUE(server->ok());
  httplib::Client client = Client(*server);
  auto stats = [&client] {
    return (
        *ParseJson(client.Post("/v1/conversations/list", "{}", "application/json")->body))["stats"];
  };
  for (const char* id : {"a", "b"}) {
    ASSERT_EQ(client.Post("/v1/chat/completions", ChatBody(id, 4), "application/json")->status,
              200);
  }
  Json idle = stats();
  EXPECT_EQ(idle["active_conversations"], 2) << idle.dump();  // held, none running
  EXPECT_EQ(idle["running_requests"], 0);
  const Json& parts = idle["active_memory_parts_mb"];
  EXPECT_GT(parts["tokens"].get<double>(), 0) << idle.dump();
  EXPECT_GE(parts["index"].get<double>(), 0);
  EXPECT_GE(parts["kv"].get<double>(), 0);
  EXPECT_NEAR(
      idle["active_memory_mb"].get<double>(),
      parts["tokens"].get<double>() + parts["index"].get<double>() + parts["kv"].get<double>(),
      1e-9);

  // A long generation of a third conversation: held and running.
  std::thread generation([&] {
    Json body = *ParseJson(ChatBody("c", 800));
    body["ignore_eos"] = true;
    httplib::Client other = Client(*server);
    EXPECT_EQ(other.Post("/v1/chat/completions", DumpJson(body), "application/json")->status, 200);
  });
  Json busy;
  for (const auto deadline = Clock::now() + std::chrono::seconds(20); Clock::now() < deadline;
       std::this_thread::sleep_for(std::chrono::milliseconds(10))) {
    busy = stats();
    if (busy["running_requests"] == 1) break;
  }
  EXPECT_EQ(busy["running_requests"], 1) << busy.dump();
  EXPECT_EQ(busy["active_conversations"], 3) << busy.dump();
  EXPECT_EQ(client.Post("/v1/conversations/end", R"({"conversation_id": "c"})", "application/json")
                ->status,
            200);
  generation.join();
  for (const char* id : {"a", "b"}) {
    client.Post("/v1/conversations/end", DumpJson(Json{{"conversation_id", id}}),
                "application/json");
  }
  Json ended = stats();
  EXPECT_EQ(ended["active_conversations"], 0) << ended.dump();
  EXPECT_EQ(ended["running_requests"], 0);
  EXPECT_EQ(ended["active_memory_parts_mb"]["tokens"].get<double>(), 0) << ended.dump();
  EXPECT_EQ(server->Terminate(), 0);
}

}  // namespace
}  // namespace kvault::testing
