// Details a new user hits when trying the README's commands in its order (issue 15, item
// 15): `session list --data-dir D`, a benchmark that leaves nothing in the temp folder, and
// stats that name the encoding actually applied to the blocks at rest.
#include <chrono>
#include <filesystem>
#include <string>

#include "tests/integration/server_process.h"
#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

namespace fs = std::filesystem;

fs::path FreshDir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("kvault_cli_extras_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(CliExtrasTest, SessionListTakesTheDataDirAfterTheSubcommand) {
  const fs::path data = FreshDir("sessions");
  {
    // A session saved by a server, listed offline afterwards.
    ServerProcess server({"--model", TestModelPath(), "--data-dir", (data / "d").string(),
                          "--cache-dir", (data / "c").string()});
    ASSERT_TRUE(server.ok()) << server.log();
    httplib::Client client("127.0.0.1", server.port());
    client.set_read_timeout(std::chrono::seconds(60));
    const Json chat = {{"conversation_id", "notes"},
                       {"messages", {{{"role", "user"}, {"content", "Remember the code word."}}}},
                       {"max_tokens", 2}};
    ASSERT_EQ(client.Post("/v1/chat/completions", DumpJson(chat), "application/json")->status, 200);
    ASSERT_EQ(
        client
            .Post("/v1/sessions/kept/save", R"({"conversation_id": "notes"})", "application/json")
            ->status,
        200);
    ASSERT_EQ(server.Terminate(), 0);
  }
  for (const std::vector<std::string>& order :
       {std::vector<std::string>{"session", "list", "--data-dir", (data / "d").string()},
        std::vector<std::string>{"session", "--data-dir", (data / "d").string(), "list"}}) {
    std::vector<std::string> argv = order;
    argv.insert(argv.begin(), KvaultBinary());
    const ProcessResult listed = RunProcess(argv);
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    EXPECT_NE(listed.out.find("kept"), std::string::npos) << listed.out;
  }
  fs::remove_all(data);
}

// With TMPDIR pointing at an empty folder, `bench prefix` must leave it empty, whether or not
// llama-server (make llama-tools) is there for its second half.
TEST(CliExtrasTest, BenchPrefixLeavesNothingInTheTempFolder) {
  const fs::path tmp = FreshDir("tmp");
  const ProcessResult bench =
      RunProcess({"/usr/bin/env", "TMPDIR=" + tmp.string(), KvaultBinary(), "bench", "prefix",
                  "--model", TestModelPath(), "--requests", "8", "--prefix-tokens", "32",
                  "--concurrency", "2", "--max-tokens", "2"});
  // Its kvault half always runs: the report, or the error of the missing llama-server.
  EXPECT_TRUE(bench.exit_code == 0 ||
              bench.err.find("cannot start llama-server") != std::string::npos)
      << bench.exit_code << "\n"
      << bench.err;
  EXPECT_NE(bench.err.find("bench prefix: kvault"), std::string::npos) << bench.err;
  std::vector<std::string> left;
  for (const fs::directory_entry& entry : fs::directory_iterator(tmp)) {
    left.push_back(entry.path().filename().string());
  }
  EXPECT_TRUE(left.empty()) << "left in TMPDIR: " << (left.empty() ? "" : left.front());
  fs::remove_all(tmp);
}

TEST(CliExtrasTest, StatsNameTheEncodingActuallyAppliedToAQuantizedCache) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--cache-encoding", "q4+zstd"}, "q4+zstd"},
      // A q8_0 compute cache is stored as computed: q4 at rest does not apply to it.
      {{"--kv-cache-dtype", "q8_0", "--cache-encoding", "q4+zstd"}, "q8_0+zstd"}};
  for (const auto& [flags, expected] : cases) {
    std::vector<std::string> args = {"--model", TestModelPath()};
    args.insert(args.end(), flags.begin(), flags.end());
    ServerProcess server(args);
    ASSERT_TRUE(server.ok()) << server.log();
    httplib::Client client("127.0.0.1", server.port());
    httplib::Result stats = client.Get("/v1/cache/stats");
    ASSERT_TRUE(stats && stats->status == 200);
    EXPECT_EQ((*ParseJson(stats->body))["encoding"], expected) << flags.back();
    if (expected.starts_with("q8_0")) {
      EXPECT_NE(server.log().find("applies to f16 caches only"), std::string::npos) << server.log();
    }
  }
}

}  // namespace
}  // namespace kvault::testing
