// End-to-end tests of the kvault command line, run as a user runs it.
#include <algorithm>
#include <filesystem>

#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <unistd.h>

namespace kvault::testing {
namespace {

ProcessResult Kvault(std::vector<std::string> args) {
  args.insert(args.begin(), KvaultBinary());
  return RunProcess(args);
}

int CountLines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
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

}  // namespace
}  // namespace kvault::testing
