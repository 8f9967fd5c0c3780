// End-to-end tests of `kvault chat` driven through stdin: a reply from the tiny model, then
// the knowledge commands, asserting on each printed line.
#include <filesystem>
#include <regex>

#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>
#include <unistd.h>

namespace kvault::testing {
namespace {

constexpr char kHelpLine[] =
    "commands: /topics  /store <topic> <key> <value>  /search <query>  /stats  /help  /quit";

class ChatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = (std::filesystem::temp_directory_path() /
                 ("kvault_chat_test_" + std::to_string(::getpid()) + "_" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                    .string();
    std::filesystem::remove_all(data_dir_);
  }
  void TearDown() override { std::filesystem::remove_all(data_dir_); }

  // Runs `kvault chat` on the tiny model (greedy, 6 tokens per reply) with `script` on stdin.
  ProcessResult Chat(const std::string& script) {
    return RunProcess({KvaultBinary(), "chat", "-m", TestModelPath(), "--data-dir", data_dir_,
                       "--cache-dir", data_dir_ + "/blocks", "-n", "6", "--temp", "0"},
                      script);
  }
  // The output from the first line that starts with `first` on.
  static std::string From(const std::string& out, const std::string& first) {
    const size_t at = out.find("\n" + first);
    return at == std::string::npos ? "" : out.substr(at + 1);
  }
  static std::string Quote(const std::string& text) {
    static const std::regex special(R"([.^$|()\[\]{}*+?\\])");
    return std::regex_replace(text, special, R"(\$&)");
  }

  std::string data_dir_;
};

TEST_F(ChatTest, MessageThenEveryCommand) {
  ProcessResult result = Chat(
      "Hello there, who are you?\n"
      "/store travel city Lisbon\n"
      "/topics\n"
      "/search Lisbon\n"
      "/nonsense\n"
      "/stats\n"
      "/quit\n"
      "this line is never read\n");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const std::string& out = result.out;
  // The reply comes first: some text, then its own line break.
  const std::string commands = From(out, "stored ");
  ASSERT_FALSE(commands.empty()) << out;
  EXPECT_GT(out.size(), commands.size() + 1) << "no reply before the commands: " << out;

  const std::regex expected(
      "stored travel/city: Lisbon\n"
      "travel \\(1 facts\\)\n"
      "\\[[0-9]+\\.[0-9]{2}\\] travel/city: Lisbon\n"
      "unknown command /nonsense; " +
      Quote(kHelpLine) +
      "\n"
      "conversation chat: 2 turns, [1-9][0-9]* tokens\n"
      "last reply: [1-9][0-9]* prompt tokens \\([0-9]+ reused from cache, none\\), 6 generated, "
      "first token [0-9]+ ms, [0-9.]+ tokens/s\n"
      "kv cache: 0 tokens restored \\(0 from ram, 0 from disk\\), 1 checkpoints\n"
      "knowledge: 1 topics, 1 facts \\(" +
      Quote(data_dir_) + "/knowledge\\.db\\)\n");
  EXPECT_TRUE(std::regex_match(commands, expected)) << commands;
  EXPECT_TRUE(std::filesystem::exists(data_dir_ + "/knowledge.db"));
  EXPECT_EQ(out.find("never read"), std::string::npos);
}

TEST_F(ChatTest, MistakesPrintOneLineAndTheChatGoesOn) {
  ProcessResult result = Chat(
      "/nonsense\n"
      "/store travel\n"
      "/search\n"
      "/store a/b key value\n"
      "/help\n"
      "/topics\n"
      "/quit\n");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "unknown command /nonsense; " + std::string(kHelpLine) +
                            "\n"
                            "usage: /store <topic> <key> <value>\n"
                            "usage: /search <query>\n"
                            "error: knowledge: topic names have 1 to 128 printable characters "
                            "and no '/' (this one has a '/')\n" +
                            kHelpLine +
                            "\n"
                            "no topics yet; /store <topic> <key> <value> adds one\n");
}

TEST_F(ChatTest, EndOfInputExitsZeroAndFactsPersist) {
  // No /quit, and the last line has no line break.
  ProcessResult first = Chat("/store travel city Lisbon\n/search lisbon");
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_TRUE(std::regex_match(first.out, std::regex("stored travel/city: Lisbon\n"
                                                     "\\[[0-9.]+\\] travel/city: Lisbon\n")))
      << first.out;
  ProcessResult second = Chat("/topics\n");
  EXPECT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, "travel (1 facts)\n");
  ProcessResult silent = Chat("");
  EXPECT_EQ(silent.exit_code, 0) << silent.err;
  EXPECT_EQ(silent.out, "");
}

// `kvault chat` runs the server's stack: the second run continues the conversation with its
// KV restored from the disk tier, not recomputed.
TEST_F(ChatTest, ASecondRunRestoresTheFirstRunsKv) {
  // Long enough for whole 256-token blocks: the system message is a few hundred tokens.
  std::string system = "You are a careful assistant.";
  for (int i = 0; i < 60; ++i) system += " Remember fact number " + std::to_string(i) + ".";
  ProcessResult first = RunProcess(
      {KvaultBinary(), "chat", "-m", TestModelPath(), "--data-dir", data_dir_, "--cache-dir",
       data_dir_ + "/blocks", "-n", "6", "--temp", "0", "--system", system},
      "What is fact number 7?\nAnd fact number 9?\n/stats\n");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  // Within one run the second prompt reuses the sequence's own cells.
  std::smatch own;
  ASSERT_TRUE(
      std::regex_search(first.out, own,
                        std::regex("last reply: ([0-9]+) prompt tokens \\(([0-9]+) reused from "
                                   "cache, own\\)")))
      << first.out;
  EXPECT_GT(std::stoi(own[2]), 300) << first.out;
  EXPECT_NE(first.out.find("conversation chat: 5 turns"), std::string::npos) << first.out;

  ProcessResult second = Chat("And fact number 11?\n/stats\n");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  std::smatch restored;
  ASSERT_TRUE(std::regex_search(
      second.out, restored,
      std::regex("last reply: ([0-9]+) prompt tokens \\(([0-9]+) reused from cache, disk\\)")))
      << second.out;
  const int prompt = std::stoi(restored[1]);
  const int cached = std::stoi(restored[2]);
  // Every whole block of the first run's history: at least the system message's.
  EXPECT_GE(cached, 256) << second.out;
  EXPECT_LT(cached, prompt);
  EXPECT_NE(second.out.find("conversation chat: 7 turns"), std::string::npos) << second.out;
  EXPECT_TRUE(
      std::regex_search(second.out, std::regex("kv cache: [1-9][0-9]* tokens restored \\(0 from "
                                               "ram, 1 from disk\\)")))
      << second.out;
}

}  // namespace
}  // namespace kvault::testing
