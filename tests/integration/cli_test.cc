// End-to-end tests of the kvault command line, run as a user runs it.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/integration/server_process.h"
#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

ProcessResult Kvault(std::vector<std::string> args) {
  args.insert(args.begin(), KvaultBinary());
  return RunProcess(args);
}

int CountLines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// GET `path` of a server as JSON; a JSON null if it fails.
Json GetJson(const ServerProcess& server, const std::string& path) {
  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(30);
  httplib::Result response = client.Get(path);
  if (!response || response->status != 200) return Json();
  Result<Json> json = ParseJson(response->body);
  return json.ok() ? *json : Json();
}

TEST(CliTest, VersionPrintsKvaultAndLlamaCpp) {
  ProcessResult result = Kvault({"--version"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.out.find("kvault 0."), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("llama.cpp "), std::string::npos) << result.out;
}

TEST(CliTest, MakeModelThenCompletePrintsTheRequestedTokens) {
  const std::string model =
      (std::filesystem::temp_directory_path() / "kvault_cli_test_t.gguf").string();
  ProcessResult made = Kvault({"make-model", "--preset", "tiny", "-o", model});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  ProcessResult completed =
      Kvault({"complete", "--model", model, "--prompt", "hello", "-n", "8", "--ignore-eos"});
  EXPECT_EQ(completed.exit_code, 0) << completed.err;
  EXPECT_FALSE(completed.out.empty());
  EXPECT_NE(completed.err.find("8 tokens generated"), std::string::npos) << completed.err;
  // Greedy is reproducible end to end.
  ProcessResult first = Kvault({"complete", "-m", model, "-p", "hello", "-n", "8", "--temp", "0"});
  ProcessResult second = Kvault({"complete", "-m", model, "-p", "hello", "-n", "8", "--temp", "0"});
  EXPECT_EQ(first.out, second.out);
  std::filesystem::remove(model);
}

TEST(CliTest, MissingModelExitsNonZeroWithOneLine) {
  ProcessResult result = Kvault({"complete", "--model", "/nonexistent/m.gguf", "-p", "hi"});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_EQ(CountLines(result.err), 1) << result.err;
  EXPECT_NE(result.err.find("/nonexistent/m.gguf"), std::string::npos);
  EXPECT_TRUE(result.out.empty());
}

TEST(CliTest, BadFlagsAndValuesExitTwoWithOneLine) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"complete", "--no-such-flag"},
           {"complete", "-m", TestModelPath(), "-p", "x", "-n", "minus-three"},
           {"make-model", "--preset", "enormous", "-o", "/tmp/x.gguf"},
           {"make-model", "--weights", "int3", "-o", "/tmp/x.gguf"},
           {"no-such-command"},
       }) {
    ProcessResult result = Kvault(args);
    EXPECT_EQ(result.exit_code, 2) << args[0] << " " << result.err;
    EXPECT_EQ(CountLines(result.err), 1) << result.err;
  }
}

TEST(CliTest, ChatCommandsDrivenThroughStdin) {
  const std::string data =
      (std::filesystem::temp_directory_path() / ("kvault_cli_test_" + std::to_string(::getpid())))
          .string();
  std::filesystem::remove_all(data);
  const std::string db = data + "/knowledge.db";
  const std::string script =
      "/topics\n"
      "/store travel passport expires in March 2027\n"
      "/store health allergy penicillin\n"
      "/topics\n"
      "/search when does my passport expire\n"
      "Hello, who are you?\n"
      "Tell me more.\n"
      "/stats\n"
      "/nonsense\n"
      "/quit\n"
      "this line is never read\n";
  // A private data folder: chat keeps its conversation there, like the server.
  ProcessResult result = RunProcess({KvaultBinary(), "chat", "-m", TestModelPath(), "--data-dir",
                                     data, "--knowledge-db", db, "-n", "6", "--temp", "0"},
                                    script);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& out = result.out;
  EXPECT_NE(out.find("no topics yet"), std::string::npos) << out;
  EXPECT_NE(out.find("stored travel/passport"), std::string::npos);
  EXPECT_NE(out.find("health (1 facts)\ntravel (1 facts)"), std::string::npos) << out;
  EXPECT_NE(out.find("travel/passport: expires in March 2027"), std::string::npos) << out;
  // Two exchanges, the second reusing the first's KV.
  EXPECT_NE(out.find("conversation chat: 4 turns"), std::string::npos) << out;
  EXPECT_NE(out.find("6 generated"), std::string::npos) << out;
  EXPECT_NE(out.find("reused from cache"), std::string::npos);
  EXPECT_EQ(out.find("(0 reused from cache)"), std::string::npos) << out;
  EXPECT_NE(out.find("knowledge: 2 topics, 2 facts"), std::string::npos) << out;
  EXPECT_NE(out.find("unknown command /nonsense"), std::string::npos);
  // The knowledge store outlives the session.
  ProcessResult again = RunProcess(
      {KvaultBinary(), "chat", "-m", TestModelPath(), "--data-dir", data}, "/topics\n/stats\n");
  EXPECT_NE(again.out.find("travel (1 facts)"), std::string::npos) << again.out;
  // So does the conversation (its journal in the data folder).
  EXPECT_NE(again.out.find("conversation chat: 4 turns"), std::string::npos) << again.out;
  std::filesystem::remove_all(data);
}

TEST(CliTest, DoctorReportsEachCheckAndFailsOnAMissingModel) {
  ProcessResult good = Kvault({"doctor", "--model", TestModelPath(), "--port", "0"});
  EXPECT_EQ(good.exit_code, 0) << good.out;
  for (const char* check : {"cpu", "llama.cpp", "model", "port", "cache dir", "data dir"}) {
    EXPECT_NE(good.out.find(check), std::string::npos) << check;
  }
  EXPECT_NE(good.out.find("ready: 0 problem(s)"), std::string::npos) << good.out;
  ProcessResult bad = Kvault({"doctor", "--model", "/nonexistent/m.gguf", "--port", "0"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("FAIL  model"), std::string::npos) << bad.out;
}

TEST(CliTest, NotAModelIsAClearError) {
  ProcessResult result = Kvault({"complete", "-m", "/etc/hostname", "-p", "hi"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("not a GGUF"), std::string::npos) << result.err;
}

// Issue 15, item 8: KV3D's config sections and `kvault doctor --write-config`.

// A fresh folder under the temp directory, named after the test.
std::string FreshDir(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("kvault_cli_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `kvault doctor ... --write-config` with XDG_CONFIG_HOME=<config_home>.
ProcessResult DoctorWritingConfig(const std::string& config_home, const std::string& dir,
                                  std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"/usr/bin/env",  "XDG_CONFIG_HOME=" + config_home,
                                   KvaultBinary(),  "doctor",
                                   "--model",       TestModelPath(),
                                   "--port",        "0",
                                   "--cache-dir",   dir + "/cache",
                                   "--data-dir",    dir + "/data",
                                   "--write-config"};
  args.insert(args.end(), extra.begin(), extra.end());
  return RunProcess(args);
}

TEST(CliConfigTest, DoctorWritesAStarterConfigThatServeStartsFrom) {
  const std::string dir = FreshDir("doctor_config");
  const std::string config_home = dir + "/xdg";
  const std::string path = config_home + "/kvault/config.json";
  ProcessResult doctor = DoctorWritingConfig(config_home, dir);
  ASSERT_EQ(doctor.exit_code, 0) << doctor.out;
  EXPECT_NE(doctor.out.find("ok    config     wrote " + path), std::string::npos) << doctor.out;
  Result<Json> config = ParseJson(ReadAll(path));
  ASSERT_TRUE(config.ok()) << ReadAll(path);
  EXPECT_EQ((*config)["model"], std::filesystem::absolute(TestModelPath()).string());
  EXPECT_EQ((*config)["data_dir"], dir + "/data");
  EXPECT_EQ((*config)["port"], 0);
  // serve finds it through XDG_CONFIG_HOME and takes the model from it (no --model given).
  ServerProcess server({}, {"XDG_CONFIG_HOME=" + config_home});
  EXPECT_TRUE(server.ok()) << server.log();
  EXPECT_EQ(server.Terminate(), 0) << server.log();
  std::filesystem::remove_all(dir);
}

TEST(CliConfigTest, DoctorNeverReplacesAConfigSilently) {
  const std::string dir = FreshDir("doctor_keep");
  const std::string config_home = dir + "/xdg";
  const std::string path = config_home + "/kvault/config.json";
  std::filesystem::create_directories(config_home + "/kvault");
  const std::string mine = R"({"window": 1024})";
  std::ofstream(path) << mine;
  ProcessResult refused = DoctorWritingConfig(config_home, dir);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.out.find("FAIL  config     " + path + " exists; not replaced"),
            std::string::npos)
      << refused.out;
  EXPECT_EQ(ReadAll(path), mine);
  ProcessResult forced = DoctorWritingConfig(config_home, dir, {"--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.out;
  EXPECT_NE(forced.out.find("the old file is kept as " + path + ".bak"), std::string::npos)
      << forced.out;
  EXPECT_EQ(ReadAll(path + ".bak"), mine);
  EXPECT_NE(ReadAll(path).find("\"model\""), std::string::npos);
  // A second --force keeps the first backup too.
  ProcessResult again = DoctorWritingConfig(config_home, dir, {"--force"});
  EXPECT_NE(again.out.find("kept as " + path + ".bak.1"), std::string::npos) << again.out;
  EXPECT_EQ(ReadAll(path + ".bak"), mine);
  std::filesystem::remove_all(dir);
}

TEST(CliConfigTest, Kv3dConfigServesOnceTheKeyWithoutAnEquivalentIsRemoved) {
  const std::string dir = FreshDir("kv3d_config");
  const std::string path = dir + "/config.json";
  // KV3D's documented ~/.config/kv3d/config.json, with the test model.
  std::ofstream(path) << R"({
    "server": {"host": "127.0.0.1", "port": 8080, "threads": 4, "api_key": ""},
    "cache": {"gpu_hot_mb": 2048, "ram_warm_mb": 8192, "ssd_cold_path": ""},
    "model": {"path": ")" + TestModelPath() +
                             R"(", "id": "qwen2.5-7b-instruct"}
  })";
  ProcessResult id = Kvault({"serve", "--config", path});
  EXPECT_EQ(id.exit_code, 2);
  EXPECT_EQ(CountLines(id.err), 1) << id.err;
  EXPECT_NE(id.err.find("'model.id' has no kvault setting"), std::string::npos) << id.err;
  EXPECT_NE(id.err.find("/v1/models"), std::string::npos) << id.err;
  // Without model.id it serves, the device KV sized by gpu_hot_mb (--kv-cache-memory), not
  // the default window of 4096.
  std::ofstream(path) << R"({
    "server": {"host": "127.0.0.1", "port": 8080, "threads": 4, "api_key": ""},
    "cache": {"gpu_hot_mb": 2048, "ram_warm_mb": 8192, "ssd_cold_path": ""},
    "model": {"path": ")" + TestModelPath() +
                             R"("}
  })";
  {
    ServerProcess server({"--config", path});
    ASSERT_TRUE(server.ok()) << server.log();
    EXPECT_NE(server.log().find("kvault serving"), std::string::npos) << server.log();
    EXPECT_EQ(server.log().find("(window 4096,"), std::string::npos) << server.log();
    EXPECT_EQ(server.Terminate(), 0) << server.log();
  }
  std::ofstream(path) << R"({"server": {"workers": 8}})";
  ProcessResult unknown = Kvault({"serve", "--config", path});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_EQ(CountLines(unknown.err), 1) << unknown.err;
  EXPECT_NE(unknown.err.find("unknown key 'server.workers'"), std::string::npos) << unknown.err;
  std::filesystem::remove_all(dir);
}

// The seeds' flags (../shared/seeds: KeSSie, zKV) that kvault has no equivalent for are refused
// before anything starts, in one line that says why and names kvault's nearest setting.
TEST(CliTest, OtherToolsFlagsWithoutAnEquivalentAreRefusedWithTheReason) {
  const std::string model = TestModelPath();
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {{"--kv-cache-dtype", "fp8_e5m2"}, "nearest are q8_0"},
           {{"--kv-cache-dtype", "fp8_e4m3fn"}, "no fp8 KV cache"},
           {{"--backend", "upstream"}, "needs --upstream URL"},
           {{"--backend", "llama.cpp", "--upstream", "http://127.0.0.1:9/v1"}, "give one"},
           {{"--upstream", "127.0.0.1:8000"}, "not an http:// URL"},
           {{"--backend", "vllm"}, "--backend upstream --upstream URL"},
           // The tiny model is f16: bfloat16 would need converted weights.
           {{"--dtype", "bfloat16"}, "own types, here f16"},
           {{"--gpu-memory-utilization", "0.92"}, "needs --gpus N"},
           {{"--kv-quant", "int8", "--kv-cache-dtype", "q4_0"}, "is --kv-cache-dtype q8_0"},
           {{"--kv-quant", "int2"}, "int2"},
           // The tiny model's KV: 4 layers x (128 K + 128 V) x 2 bytes = 2048 bytes a token.
           {{"--kv-cache-memory", "2MB", "--window", "4096", "--conversation-threads", "4"},
            "holds 1024 tokens"},
           {{"--kv-cache-memory", "2MB", "--max-context", "1024"}, "need 2048"},
           {{"--kv-cache-memory", "100KB"}, "below --window's least"},
           {{"--kv-cache-memory", "lots"}, "not a memory size"},
           {{"--kv-cache-memory", "4GB", "--gpu-memory-utilization", "0.5"}, "give one"},
       }) {
    // `timeout`: a flag wrongly accepted would start a server that never exits.
    std::vector<std::string> argv = {"/usr/bin/timeout", "30",  KvaultBinary(), "serve",
                                     "--model",          model, "--port",       "0"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    ProcessResult result = RunProcess(argv);
    EXPECT_EQ(result.exit_code, 2) << c.args[0] << " " << c.args[1] << ": " << result.err;
    EXPECT_EQ(CountLines(result.err), 1) << result.err;
    EXPECT_NE(result.err.find(c.says), std::string::npos) << result.err;
  }
}

TEST(CliTest, OtherToolsNamesForKvaultSettingsAreAccepted) {
  const std::string version = Kvault({"--version"}).out;
  {
    ServerProcess server({"--model", TestModelPath(), "--max-context", "512", "--kv-quant", "int8",
                          "--backend", "llama.cpp", "--dtype", "float16"});
    ASSERT_TRUE(server.ok()) << server.log();
    const Json health = GetJson(server, "/health");
    ASSERT_TRUE(health.is_object());
    EXPECT_EQ(health["kv_sizing"]["window"], 512);
    EXPECT_EQ(health["kv_sizing"]["kv_cache_dtype"], "q8_0");
    EXPECT_EQ(health["kv_sizing"]["sized_by"], "window");
    // KV3D's health check: the service and its version (the one `kvault --version` prints).
    EXPECT_EQ(health["service"], "kvault");
    ASSERT_TRUE(health["version"].is_string());
    EXPECT_NE(version.find("kvault " + health["version"].get<std::string>() + "\n"),
              std::string::npos)
        << version;
  }
  ServerProcess server({"--model", TestModelPath(), "--kv-cache-dtype", "auto", "--dtype", "auto",
                        "--kessie-cache-size", "100000"});
  ASSERT_TRUE(server.ok()) << server.log();
  EXPECT_EQ(GetJson(server, "/health")["kv_sizing"]["kv_cache_dtype"], "f16");
  EXPECT_EQ(GetJson(server, "/v1/models")["data"][0]["max_model_len"], 100000);
}

// zKV's --kv-cache-memory: the tiny model takes 2048 bytes of f16 KV a token, so 2 MiB hold
// 1024 tokens, as two threads of two 256-token sequences, or four threads of 128 tokens.
TEST(CliTest, KvCacheMemoryDerivesTheThreadsOrTheWindowThatFit) {
  {
    ServerProcess server(
        {"--model", TestModelPath(), "--kv-cache-memory", "2MB", "--window", "256"});
    ASSERT_TRUE(server.ok()) << server.log();
    const Json health = GetJson(server, "/health");
    EXPECT_EQ(health["manager"]["max_threads"], 2) << health.dump();
    EXPECT_EQ(health["cache"]["sequences"], 4);
    EXPECT_EQ(health["kv_sizing"]["sized_by"], "memory");
    EXPECT_EQ(health["kv_sizing"]["budget_bytes"], 2 << 20);
    EXPECT_EQ(health["kv_sizing"]["bytes_per_token"], 2048);
  }
  {
    ServerProcess server({"--model", TestModelPath(), "--kv-cache-memory", "2MiB"});
    ASSERT_TRUE(server.ok()) << server.log();
    EXPECT_EQ(GetJson(server, "/v1/models")["data"][0]["window"], 128);
    EXPECT_EQ(GetJson(server, "/health")["manager"]["max_threads"], 4);
  }
  // int4: 4 layers x 2 rows x 4 blocks x 18 bytes = 576 bytes a token, 3640 tokens in 2 MiB.
  ServerProcess server({"--model", TestModelPath(), "--kv-cache-memory", "2MB", "--kv-quant",
                        "int4", "--conversation-threads", "1"});
  ASSERT_TRUE(server.ok()) << server.log();
  EXPECT_EQ(GetJson(server, "/health")["kv_sizing"]["window"], 1820);
}

// KeSSie's chat takes the serve flags that mean something without a server.
TEST(CliTest, ChatTakesTheServeFlagsThatApplyToIt) {
  const std::string data =
      (std::filesystem::temp_directory_path() / ("kvault_cli_flags_" + std::to_string(::getpid())))
          .string();
  ProcessResult result =
      RunProcess({KvaultBinary(), "chat", "-m", TestModelPath(), "--data-dir", data, "--window",
                  "256", "--kessie-cache-size", "100000", "--gpus", "0", "-n", "2"},
                 "hello\n/stats\n/quit\n");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("conversation chat: 2 turns"), std::string::npos) << result.out;
  // The values reach the stack: one it refuses comes back as its message.
  ProcessResult refused = RunProcess({KvaultBinary(), "chat", "-m", TestModelPath(), "--data-dir",
                                      data, "--max-context", "512", "--cache-size", "256"},
                                     "/quit\n");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("--cache-size must be >= --window"), std::string::npos) << refused.err;
  std::filesystem::remove_all(data);
}

}  // namespace
}  // namespace kvault::testing
