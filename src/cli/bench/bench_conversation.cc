#include "cli/bench/bench_conversation.h"

#include <chrono>

#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

BenchConversation::BenchConversation(BenchConversationOptions options,
                                     std::unique_ptr<engine::Model> model)
    : options_(std::move(options)),
      model_(std::move(model)),
      tokenizer_(*model_),
      template_(engine::ChatTemplate::ForModel(*model_)),
      store_(options_.cache_size) {}

Result<std::unique_ptr<BenchConversation>> BenchConversation::Create(
    BenchConversationOptions options) {
  if (options.cache_size < 1 || options.batch_turns < 1) {
    return InvalidArgumentError("bench: cache size and batch size must be positive");
  }
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model,
                      engine::Model::Load({.path = options.model_path, .vocab_only = true}));
  auto conversation = std::unique_ptr<BenchConversation>(
      new BenchConversation(std::move(options), std::move(model)));
  memory::ChunkIndexOptions index_options;
  index_options.path = conversation->options_.index_path;
  if (!conversation->options_.embedding_model.empty()) {
    // All layers on a GPU when llama.cpp has one.
    KV_ASSIGN_OR_RETURN(conversation->embedder_,
                        conversation::LlamaEmbedder::Open(
                            {.path = conversation->options_.embedding_model, .n_gpu_layers = -1}));
    index_options.embedder = conversation->embedder_.get();
  }
  const engine::Tokenizer* tokenizer = &conversation->tokenizer_;
  index_options.detokenize = [tokenizer](std::span<const int32_t> tokens) {
    return tokenizer->Detokenize(tokens, /*render_special=*/false);
  };
  KV_ASSIGN_OR_RETURN(conversation->index_, memory::ChunkIndex::Open(std::move(index_options)));
  return conversation;
}

Result<memory::Turn> BenchConversation::Append(memory::Role role, const std::string& text,
                                               int64_t time) {
  auto start = Clock::now();
  const engine::ChatMessage message{std::string(memory::RoleName(role)), text};
  KV_ASSIGN_OR_RETURN(const std::string rendered, template_.Apply({&message, 1}, false));
  KV_ASSIGN_OR_RETURN(std::vector<llama_token> tokens,
                      tokenizer_.Tokenize(rendered, {.parse_special = true}));
  seconds_.tokenize += SecondsSince(start);
  start = Clock::now();
  KV_ASSIGN_OR_RETURN(const memory::Turn turn, store_.Append(role, tokens, 0, time));
  seconds_.store += SecondsSince(start);
  pending_.push_back({turn, std::move(tokens)});
  if (static_cast<int>(pending_.size()) >= options_.batch_turns) KV_RETURN_IF_ERROR(Flush());
  return turn;
}

Status BenchConversation::Flush() {
  if (pending_.empty()) return Status::Ok();
  std::vector<memory::IndexTurn> turns;
  for (const PendingTurn& pending : pending_) {
    turns.push_back({pending.turn.number, pending.turn.first_pos, pending.tokens});
  }
  const auto start = Clock::now();
  const Status status = index_->AppendTurns(kName, turns);
  seconds_.index += SecondsSince(start);
  pending_.clear();
  return status;
}

Result<std::string> BenchConversation::Text(int64_t first_pos, int64_t n) const {
  KV_ASSIGN_OR_RETURN(const std::vector<int32_t> tokens, store_.Tokens(first_pos, n));
  return tokenizer_.Detokenize(tokens, /*render_special=*/false);
}

}  // namespace kvault::cli
