// End-to-end tests of the kvault command line, run as a user runs it.
#include <algorithm>
#include <filesystem>

#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>

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

TEST(CliTest, NotAModelIsAClearError) {
  ProcessResult result = Kvault({"complete", "-m", "/etc/hostname", "-p", "hi"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("not a GGUF"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace kvault::testing
