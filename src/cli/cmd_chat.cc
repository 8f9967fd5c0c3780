// kvault chat: an interactive terminal chat with a local model (no server), streaming the
// reply, with knowledge-store commands. Reads lines from stdin, so it can be scripted; end of
// input quits like /quit. What each command prints (one line per item, stable for scripts):
//
//   /store <topic> <key> <value>  stored <topic>/<key>: <value>
//   /topics                       <topic> (<n> facts)  per topic, by name
//   /search <query>               [<score>] <topic>/<key>: <value>  facts, best first, at most 5
//                                 [<score>] turns <a>-<b>: <text>  then chunks of the
//                                 conversation's history, as the recall pipeline finds them
//   /stats                        conversation <id>: <n> turns, <n> tokens
//                                 last reply: <n> prompt tokens (<n> reused from cache,
//                                   <own|shared|ram|disk|none>), ... (after a reply)
//                                 kv cache: <n> tokens restored (<n> from ram, <n> from disk),
//                                   <n> checkpoints
//                                 knowledge: <n> topics, <n> facts (<file>)
//   /help                         commands: ...
//   /quit (or /exit)              ends the chat, exit status 0
//   any other /word               unknown command /word; commands: ...
//
// It runs the stack `kvault serve` runs (conversation/stack.h): the knowledge store, the
// conversation journals, the chunk index (<data-dir>/knowledge.db, conversations/, index.db)
// and the KV blocks (<cache-dir>) are the server's, in the scope of a server without API
// keys. A chat conversation is kept across runs, its KV restored rather than recomputed (and
// a server can continue it, and back).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/paths.h"
#include <unistd.h>

#include "kvault/base/file.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/stack.h"
#include "kvault/memory/knowledge_store.h"

namespace kvault::cli {
namespace {

struct ChatOptions {
  std::string model_path = "models/default.gguf";
  std::string conversation_id = "chat";
  std::string system;
  std::string data_dir;
  std::string cache_dir;
  std::string knowledge_db;  // "" = <data_dir>/knowledge.db
  int window = 4096;
  int64_t cache_size = conversation::StackConfig{}.cache_size;  // tokens remembered
  int gpus = 0;  // > 0: offload all layers, split across that many GPUs
  int max_tokens = 256;
  float temperature = 0.8f;
  uint32_t seed = 42;
  int threads = 0;
};

constexpr char kHelp[] =
    "commands: /topics  /store <topic> <key> <value>  /search <query>  /stats  /help  /quit\n";
// The scope of `kvault chat`'s facts: the one a server without API keys uses.
constexpr char kScope[] = "";

class StdoutSink : public conversation::ReplySink {
 public:
  bool OnText(std::string_view text) override {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  }
};

class ChatSession {
 public:
  // The same stack as `kvault serve` (conversation/stack.h), with one conversation thread:
  // the conversation's KV is checkpointed to the block store and restored on the next run.
  static Result<std::unique_ptr<ChatSession>> Create(const ChatOptions& options) {
    auto session = std::unique_ptr<ChatSession>(new ChatSession(options));
    conversation::StackConfig config;
    config.model_path = options.model_path;
    config.window = options.window;
    config.cache_size = options.cache_size;
    config.gpus = options.gpus;
    config.max_generation = options.max_tokens;
    config.threads = options.threads;
    config.conversation_threads = 1;
    config.conversation_queue = 0;
    config.data_dir = options.data_dir;
    config.cache_dir = options.cache_dir;
    config.knowledge_path = options.knowledge_db;
    KV_ASSIGN_OR_RETURN(session->stack_, conversation::Stack::Build(config));
    session->manager_ = &session->stack_->manager();
    session->knowledge_ = &session->stack_->knowledge();
    return session;
  }

  // Handles one input line; returns false to quit.
  bool Handle(const std::string& line) {
    if (line.empty()) return true;
    if (line[0] != '/') {
      Reply(line);
      return true;
    }
    std::istringstream words(line);
    std::string command;
    words >> command;
    if (command == "/quit" || command == "/exit") return false;
    if (command == "/topics")
      Topics();
    else if (command == "/store")
      Store(words);
    else if (command == "/search")
      Search(Rest(words));
    else if (command == "/stats")
      Stats();
    else if (command == "/help")
      std::printf("%s", kHelp);
    else
      std::printf("unknown command %s; %s", command.c_str(), kHelp);
    return true;
  }

 private:
  explicit ChatSession(const ChatOptions& options) : options_(options) {}

  static std::string Rest(std::istringstream& words) {
    std::string rest;
    std::getline(words >> std::ws, rest);
    return rest;
  }

  void Reply(const std::string& text) {
    conversation::GenerateRequest request;
    request.conversation_id = options_.conversation_id;
    request.explicit_conversation = true;
    if (first_turn_ && !options_.system.empty()) {
      request.messages.push_back({"system", options_.system});
    }
    request.messages.push_back({"user", text});
    request.sampling.temperature = options_.temperature;
    request.sampling.seed = options_.seed + static_cast<uint32_t>(n_replies_);
    Result<conversation::ConversationManager::PendingPtr> pending =
        manager_->Prepare(std::move(request));
    if (!pending.ok()) return PrintError(pending.status());
    StdoutSink sink;
    Result<conversation::GenerateResult> result = manager_->Run(std::move(pending).value(), &sink);
    std::printf("\n");
    if (!result.ok()) return PrintError(result.status());
    first_turn_ = false;
    ++n_replies_;
    last_ = *result;
  }

  void Topics() {
    Result<std::vector<memory::TopicSummary>> topics = knowledge_->Topics(kScope);
    if (!topics.ok()) return PrintError(topics.status());
    if (topics->empty()) std::printf("no topics yet; /store <topic> <key> <value> adds one\n");
    for (const auto& topic : *topics) {
      std::printf("%s (%lld facts)\n", topic.name.c_str(), static_cast<long long>(topic.n_facts));
    }
  }

  void Store(std::istringstream& words) {
    std::string topic, key;
    words >> topic >> key;
    const std::string value = Rest(words);
    if (value.empty()) {
      std::printf("usage: /store <topic> <key> <value>\n");
      return;
    }
    Status status = knowledge_->Put(kScope, {{topic, key, value}});
    if (!status.ok()) return PrintError(status);
    std::printf("stored %s/%s: %s\n", topic.c_str(), key.c_str(), value.c_str());
  }

  void Search(const std::string& query) {
    if (query.empty()) {
      std::printf("usage: /search <query>\n");
      return;
    }
    Result<std::vector<memory::Fact>> facts = knowledge_->Search(kScope, query, 5);
    if (!facts.ok()) return PrintError(facts.status());
    for (const memory::Fact& fact : *facts) {
      std::printf("[%.2f] %s/%s: %s\n", fact.score, fact.topic.c_str(), fact.key.c_str(),
                  fact.value.c_str());
    }
    // The same search the recall pipeline runs over the conversation's history.
    Result<std::vector<conversation::SearchResult>> chunks =
        manager_->history().Search(kScope, options_.conversation_id, query, 5);
    const size_t n_chunks = chunks.ok() ? chunks->size() : 0;
    for (size_t i = 0; i < n_chunks; ++i) {
      const conversation::SearchResult& chunk = (*chunks)[i];
      std::string text = chunk.text.substr(0, 120);
      std::replace(text.begin(), text.end(), '\n', ' ');
      std::printf("[%.2f] turns %lld-%lld: %s\n", chunk.score,
                  static_cast<long long>(chunk.first_turn), static_cast<long long>(chunk.last_turn),
                  text.c_str());
    }
    if (facts->empty() && n_chunks == 0) std::printf("nothing found for \"%s\"\n", query.c_str());
  }

  void Stats() {
    std::vector<conversation::ConversationInfo> info = manager_->List("");
    const int64_t turns = info.empty() ? 0 : info[0].turns;
    const int64_t tokens = info.empty() ? 0 : info[0].tokens;
    std::printf("conversation %s: %lld turns, %lld tokens\n", options_.conversation_id.c_str(),
                static_cast<long long>(turns), static_cast<long long>(tokens));
    if (n_replies_ > 0) {
      const double seconds = (last_.total_ms - last_.first_token_ms) / 1000.0;
      std::printf(
          "last reply: %d prompt tokens (%d reused from cache, %s), %d generated, "
          "first token %.0f ms, %.1f tokens/s\n",
          last_.prompt_tokens, last_.cached_tokens,
          std::string(conversation::PrefixSourceName(last_.cache_source)).c_str(),
          last_.completion_tokens, last_.first_token_ms,
          seconds > 0 ? (last_.completion_tokens - 1) / seconds : 0.0);
    }
    const conversation::KvCacheStats kv = manager_->kv_stats();
    std::printf(
        "kv cache: %lld tokens restored (%lld from ram, %lld from disk), %lld checkpoints\n",
        static_cast<long long>(kv.restored_tokens), static_cast<long long>(kv.restored_ram),
        static_cast<long long>(kv.restored_disk), static_cast<long long>(kv.checkpoints));
    Result<memory::KnowledgeStats> knowledge = knowledge_->Stats(kScope);
    if (!knowledge.ok()) {
      PrintError(knowledge.status());
    } else {
      std::printf("knowledge: %lld topics, %lld facts (%s)\n",
                  static_cast<long long>(knowledge->topics),
                  static_cast<long long>(knowledge->facts), options_.knowledge_db.c_str());
    }
  }

  static void PrintError(const Status& status) {
    std::printf("error: %s\n", status.message().c_str());
  }

  const ChatOptions options_;
  std::unique_ptr<conversation::Stack> stack_;
  conversation::ConversationManager* manager_ = nullptr;  // the stack's
  memory::KnowledgeStore* knowledge_ = nullptr;           // the stack's
  conversation::GenerateResult last_;
  bool first_turn_ = true;
  int n_replies_ = 0;
};

}  // namespace

int RunChat(int argc, char** argv) {
  CLI::App app("Chat with a local model in the terminal (no server needed).", "chat");
  ChatOptions options;
  options.data_dir = DefaultDataDir();
  options.cache_dir = DefaultCacheDir() + "/blocks";
  app.add_option("-m,--model", options.model_path, "GGUF model file")->capture_default_str();
  app.add_option("-c,--conversation", options.conversation_id, "conversation id")
      ->capture_default_str();
  app.add_option("--system", options.system, "system message for the first turn");
  app.add_option("--data-dir", options.data_dir,
                 "conversations, index and knowledge store, as for kvault serve")
      ->capture_default_str();
  app.add_option("--cache-dir", options.cache_dir, "KV blocks on disk, as for kvault serve")
      ->capture_default_str();
  app.add_option("--knowledge-db", options.knowledge_db,
                 "knowledge store file (default: <data-dir>/knowledge.db)");
  // The serve flags that mean something without a server, with serve's names and bounds.
  app.add_option("--window,--max-context", options.window, "tokens the model sees")
      ->capture_default_str()
      ->check(CLI::Range(64, 1 << 20));
  app.add_option("--cache-size,--kessie-cache-size", options.cache_size,
                 "tokens the conversation remembers (as for kvault serve)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{64}, int64_t{1} << 40));
  app.add_option("--gpus", options.gpus, "GPUs: > 0 offloads all layers, split across that many")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  app.add_option("-n,--max-tokens", options.max_tokens, "most tokens per reply")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--temp", options.temperature, "temperature; 0 = greedy")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 2.0f));
  app.add_option("-s,--seed", options.seed, "sampling seed")->capture_default_str();
  app.add_option("-t,--threads", options.threads, "CPU threads; 0 = all cores")
      ->capture_default_str();
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;
  SetLogLevel(LogLevel::kWarning);
  if (options.knowledge_db.empty()) options.knowledge_db = options.data_dir + "/knowledge.db";

  for (const std::string& folder :
       {options.data_dir, options.cache_dir,
        std::filesystem::path(options.knowledge_db).parent_path().string()}) {
    Status dir = CreateDirectories(folder);
    if (!dir.ok()) return ReportError(dir);
  }
  Result<std::unique_ptr<ChatSession>> session = ChatSession::Create(options);
  if (!session.ok()) return ReportError(session.status());
  const bool interactive = ::isatty(STDIN_FILENO);
  if (interactive) std::printf("kvault chat (%s). %s", options.conversation_id.c_str(), kHelp);
  std::string line;
  while (true) {
    if (interactive) std::printf("> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) {
      if (interactive) std::printf("\n");  // leave the prompt's line after Ctrl-D
      break;
    }
    if (!(*session)->Handle(line)) break;
  }
  return 0;
}

}  // namespace kvault::cli
