// memory/window_builder.h: builds the prompt a long conversation sends to the model: what
// fits of the history in --window tokens, plus recalled chunks of what does not ("fog of
// war"). Used by the conversation layer before every generation, and again mid-generation
// after the hedge detector fired.
//
// Layout, in order:
//   1. the conversation's leading system turns;
//   2. the clear zone: the most recent turns that fit, up to the new message;
//   3. one system message with the recalled fog chunks, each under an annotation such as
//      "[recalled from turn 812, 3 May 2023, about 51,234 tokens ago]" (absent if nothing is
//      recalled; the date is the day the turn was said, UTC, where it is known);
//   4. the new message (the store's last turn);
//   5. the generation prompt (the assistant's turn opener).
// Parts 1-2 are the stable prefix: turn after turn they are the same tokens, so their KV is
// reused and only parts 3-5 are processed. That needs the clear zone's start to stay put,
// so it is sticky (ClearZoneState): it moves only when the prompt no longer fits, and then
// to the first turn from which the rest fits with slide_step tokens to spare, so the next
// slide (and re-prefill) is at least slide_step tokens of conversation away.
//
// Budgets: prompt <= window - generation_budget. The recall message gets at most
// recall_budget tokens, reserved whether or not anything is recalled (so what is recalled
// never moves the clear zone). Everything older than the clear zone and not dropped is fog.
//
// Thread-safety: WindowBuilder is immutable; a ClearZoneState belongs to one conversation.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/result.h"
#include "kvault/memory/chunk_index.h"
#include "kvault/memory/token_store.h"

namespace kvault::memory {

// Renders messages with the model's chat template; the conversation layer implements it.
// The tokens of a turn in the TokenStore are exactly Render(role, text) of its message.
class TurnRenderer {
 public:
  virtual ~TurnRenderer() = default;
  virtual Result<std::vector<int32_t>> Render(Role role, std::string_view text) = 0;
  // The tokens that open the assistant's reply.
  virtual std::vector<int32_t> GenerationPrompt() = 0;
  // Plain text as tokens, no special tokens parsed, none added (WindowParams::token_recall).
  virtual Result<std::vector<int32_t>> Tokenize(std::string_view text) = 0;
};

// Finds the chunks relevant to the new message among those ending at or before
// fog_end_pos, best first (ChunkIndex::Search with end_pos_limit = fog_end_pos).
using RecallFn = std::function<Result<std::vector<ChunkHit>>(int64_t fog_end_pos)>;

struct WindowParams {
  int32_t window = 4096;            // tokens the model sees per inference (--window)
  int32_t generation_budget = 512;  // tokens kept free for the reply
  int32_t slide_step = 0;           // minimum clear-zone move; 0 = window / 4
  int32_t recall_budget = 1024;     // tokens for the recall message (--recall-budget)
  double min_score = 0;             // recall relevance threshold (ChunkHit::score)
  // Recalled chunks as their own stored tokens (chat-template tokens included) rather than
  // as their detokenized text: the prompt then holds each chunk's tokens exactly, so the KV
  // computed for them earlier can be put back instead of prefilled (conversation/recall_kv.h).
  // Where the template's rendering cannot be split around a chunk, the window falls back to
  // text (Window::token_recall false).
  bool token_recall = false;
};

// A piece of knowledge recalled like a chunk (knowledge_store.h facts), best first.
struct RecalledFact {
  std::string annotation;  // "[known fact: travel / city]"
  std::string text;
};

struct WindowInputs {
  const TokenStore* store = nullptr;  // REQUIRED; its last turn is the new message
  TurnRenderer* renderer = nullptr;   // REQUIRED
  RecallFn recall;                    // empty: recall disabled
  Detokenizer detokenize;             // REQUIRED with recall: text of a chunk's tokens
  // Facts to recall ahead of chunks, within the same budget (only with `recall`).
  std::vector<RecalledFact> facts;
};

// Where the clear zone starts, kept by the conversation between builds (and persisted with
// it if the stable prefix should survive a restart).
struct ClearZoneState {
  int64_t first_turn = -1;  // turn number; -1 = not placed yet
};

struct RecalledChunk {
  ChunkHit hit;            // chunk_id -1: a recalled fact, not a chunk of the history
  std::string annotation;  // "[recalled from turn 812, 3 May 2023, about 51,234 tokens ago]"
  std::string text;        // the chunk's detokenized text (empty with token recall)
};

// A run of the history's tokens held as they are in the window: tokens [first_pos,
// first_pos + n_tokens) of the store sit at window.tokens[offset, offset + n_tokens).
struct HistoryRun {
  int64_t first_pos = 0;
  int64_t offset = 0;
  int64_t n_tokens = 0;
};

struct Window {
  std::vector<int32_t> tokens;    // the prompt
  int64_t n_prefix_tokens = 0;    // system turns + clear zone: the stable part
  int64_t first_clear_turn = -1;  // turn numbers of the clear zone; -1 if it is empty
  int64_t last_clear_turn = -1;
  int64_t clear_first_pos = 0;  // = the fog's end
  int64_t n_fog_tokens = 0;     // retained tokens between the system turns and the clear zone
  std::vector<RecalledChunk> recalled;  // in the order they appear
  int64_t n_recall_tokens = 0;          // tokens of the recall message
  bool slid = false;                    // the clear zone's start moved since the last build
  HistoryRun system_run;                // the leading system turns
  HistoryRun clear_run;                 // the clear zone
  // With token recall: each recalled chunk's tokens, in prompt order (facts have none).
  std::vector<HistoryRun> recall_runs;
  bool token_recall = false;  // the recall message was built from tokens
};

class WindowBuilder {
 public:
  explicit WindowBuilder(WindowParams params);

  // The prompt for the store's last turn; updates *state. InvalidArgument if the store is
  // empty or the system turns, the new message and the generation prompt alone exceed
  // window - generation_budget (the message says by how much). Recall errors propagate.
  Result<Window> Build(const WindowInputs& inputs, ClearZoneState* state) const;
  // OK if a prompt whose fixed part (leading system turns, new message, generation prompt)
  // has `fixed_tokens` fits; InvalidArgument with ErrorDetail::kContextLengthExceeded if
  // not. Build checks exactly this, so a caller can check before it stores the message.
  Status CheckFits(int64_t fixed_tokens) const;

  const WindowParams& params() const { return params_; }

 private:
  struct Layout;
  Result<Window> Assemble(const WindowInputs& inputs, const Layout& layout,
                          std::span<const int32_t> generation_prompt, Window window) const;
  // Picks recall hits into *chosen; returns the rendered recall message (empty for none).
  Result<std::vector<int32_t>> Recall(const WindowInputs& inputs, int64_t system_end,
                                      int64_t fog_end, int64_t reserve,
                                      std::vector<RecalledChunk>* chosen,
                                      std::vector<HistoryRun>* runs) const;
  // The recall message for `chosen` with each chunk's own tokens spliced in where its text
  // would be; *runs gets where they are (offsets in the message). FailedPrecondition if the
  // rendering cannot be split around a chunk.
  Result<std::vector<int32_t>> RenderTokenMessage(const WindowInputs& inputs,
                                                  std::span<const RecalledChunk> chosen,
                                                  std::vector<HistoryRun>* runs) const;

  WindowParams params_;
};

// "[recalled from turn 812, 3 May 2023, about 51,234 tokens ago]" (or "turns 811-812", and
// "3 May 2023 to 5 May 2023" when they were said on two days); the distance is from the
// chunk's end to end_pos. The date comes from the turns' times in `store` (none without a
// store or a known time).
std::string RecallAnnotation(const ChunkHit& hit, int64_t end_pos, const TokenStore* store);
// 51234 -> "51,234".
std::string GroupedNumber(int64_t n);
// The text of the recall system message for these chunks ("" for none).
std::string RecallMessageText(std::span<const RecalledChunk> chunks);

}  // namespace kvault::memory
