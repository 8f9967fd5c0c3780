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
    return RunProcess({KvaultBinary(), "chat", "-m", TestModelPath(), "--data-dir", data_dir_, "-n",
                       "6", "--temp", "0"},
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
      "last reply: [1-9][0-9]* prompt tokens \\([0-9]+ reused from cache\\), 6 generated, "
      "first token [0-9]+ ms, [0-9.]+ tokens/s\n"
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

}  // namespace
}  // namespace kvault::testing
