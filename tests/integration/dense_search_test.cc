// End to end, `kvault serve --embedding-model`: chunks of a long appended history are
// embedded, POST /v1/conversations/search fuses dense and BM25 rankings, /health says so,
// and the vectors survive a restart. The embedding model is the generated tiny model (random
// weights), so its similarities mean nothing: these tests check the mechanics, not relevance.
#include <filesystem>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/json.h"
#include "kvault/testing/planted_history.h"

namespace kvault::testing {
namespace {

// No word of it occurs in the history: BM25 finds nothing, dense search always finds some.
const char* kUnrelated = "zeppelin quartz xylophone";
// The largest fused score: first in both rankings, 2 / (60 + 1).
constexpr double kMaxFusedScore = 2.0 / 61;

class DenseSearchTest : public ::testing::Test {
 protected:
  DenseSearchTest() {
    char pattern[] = "/tmp/kvault_dense_XXXXXX";
    dir_ = ::mkdtemp(pattern);
  }
  ~DenseSearchTest() override { std::filesystem::remove_all(dir_); }

  // A server on this test's data dir, with the tiny model as its embedding model unless
  // `dense` is false.
  std::unique_ptr<ServerProcess> Start(bool dense = true) {
    std::vector<std::string> args = {"--model", TestModelPath(), "--window", "4096"};
    args.insert(args.end(), {"--cache-dir", dir_ + "/blocks", "--data-dir", dir_ + "/data"});
    if (dense) args.insert(args.end(), {"--embedding-model", TestModelPath()});
    auto server = std::make_unique<ServerProcess>(args);
    EXPECT_TRUE(server->ok()) << server->log();
    return server;
  }

  static Json Post(const ServerProcess& server, const std::string& path, const Json& body,
                   int expect_status = 200) {
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(300));
    httplib::Result result = client.Post(path, DumpJson(body), "application/json");
    EXPECT_TRUE(result) << path;
    if (!result) return Json();
    EXPECT_EQ(result->status, expect_status) << result->body.substr(0, 2000);
    return ParseJson(result->body).value_or(Json());
  }

  static Json Index(const ServerProcess& server) {
    httplib::Client client("127.0.0.1", server.port());
    httplib::Result result = client.Get("/health");
    EXPECT_TRUE(result && result->status == 200);
    if (!result) return Json();
    return ParseJson(result->body).value_or(Json())["index"];
  }

  static Json Search(const ServerProcess& server, const std::string& query, int k) {
    return Post(server, "/v1/conversations/search",
                {{"conversation_id", "long"}, {"query", query}, {"k", k}})["results"];
  }

  std::string dir_;
};

TEST_F(DenseSearchTest, AppendedChunksAreEmbeddedAndSearchFusesBothRankings) {
  auto server = Start();
  Json index = Index(*server);
  EXPECT_EQ(index["status"], "ok") << index.dump();
  EXPECT_EQ(index["search"], "bm25+dense");
  EXPECT_EQ(index["embedding_model"]["dim"], 256);
  EXPECT_EQ(index["embedding_model"]["pooling"], "mean");
  EXPECT_EQ(index["chunks"], 0);

  const Json appended = Post(*server, "/v1/conversations/append",
                             {{"conversation_id", "long"}, {"messages", PlantedHistory(300, 40)}});
  EXPECT_GT(appended["new_tokens"].get<int64_t>(), 12000);
  index = Index(*server);
  const int64_t n_chunks = index["chunks"].get<int64_t>();
  EXPECT_GT(n_chunks, 100) << index.dump();

  const Json hits = Search(*server, kPlantedQuestion, 5);
  ASSERT_EQ(hits.size(), 5u);
  double previous = kMaxFusedScore + 1e-9;
  for (const Json& hit : hits) {
    const double score = hit["score"].get<double>();
    EXPECT_GT(score, 0);
    EXPECT_LE(score, previous);  // best first, never above the fusion's maximum
    previous = score;
    EXPECT_FALSE(hit["text"].get<std::string>().empty());
    EXPECT_LE(hit["first_turn"].get<int64_t>(), hit["last_turn"].get<int64_t>());
  }
  // The first search loaded every chunk's vector.
  EXPECT_EQ(Index(*server)["vectors_loaded"], n_chunks);

  // Words the history never uses: only the dense side answers.
  const Json dense_only = Search(*server, kUnrelated, 3);
  EXPECT_EQ(dense_only.size(), 3u) << dense_only.dump();

  // Recall runs through the same fused search, with the fused default threshold (the BM25
  // one, 1.0, is above every fused score and would recall nothing). The filler words are in
  // most chunks, so some chunk is high in both rankings.
  const Json reply = Post(*server, "/v1/chat/completions",
                          {{"conversation_id", "long"},
                           {"messages", {{{"role", "user"}, {"content", kPlantedQuestion}}}},
                           {"max_tokens", 4},
                           {"temperature", 0}});
  EXPECT_GE(reply["kvault"]["recalled_chunks"].get<int64_t>(), 1) << reply.dump();

  // The vectors are stored with the index: after a restart the same search gives the same
  // chunks without embedding the history again.
  EXPECT_EQ(server->Terminate(), 0);
  server = Start();
  const Json again = Search(*server, kPlantedQuestion, 5);
  ASSERT_EQ(again.size(), hits.size());
  for (size_t i = 0; i < hits.size(); ++i) EXPECT_EQ(again[i]["text"], hits[i]["text"]);
}

TEST_F(DenseSearchTest, WithoutAnEmbeddingModelTheIndexIsBm25Only) {
  auto server = Start(/*dense=*/false);
  Post(*server, "/v1/conversations/append",
       {{"conversation_id", "long"}, {"messages", PlantedHistory(100, 40)}});
  const Json index = Index(*server);
  EXPECT_EQ(index["search"], "bm25") << index.dump();
  EXPECT_FALSE(index.contains("embedding_model"));
  EXPECT_GT(index["chunks"].get<int64_t>(), 10);
  EXPECT_TRUE(Search(*server, kUnrelated, 3).empty());
  const Json hits = Search(*server, kPlantedQuestion, 1);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_GT(hits[0]["score"].get<double>(), kMaxFusedScore);  // BM25's own, unbounded scale
}

TEST_F(DenseSearchTest, AMissingEmbeddingModelStopsTheServerWithItsPath) {
  ServerProcess server({"--model", TestModelPath(), "--data-dir", dir_ + "/data", "--cache-dir",
                        dir_ + "/blocks", "--embedding-model", dir_ + "/missing.gguf"});
  EXPECT_FALSE(server.ok());
  EXPECT_NE(server.log().find("missing.gguf"), std::string::npos) << server.log();
}

}  // namespace
}  // namespace kvault::testing
