#include "kvault/memory/window_builder.h"

#include <algorithm>

#include "kvault/base/status_macros.h"
#include "kvault/base/time_text.h"

namespace kvault::memory {
namespace {

constexpr std::string_view kRecallHeader =
    "Excerpts recalled from earlier in this conversation, too old to fit in the context:";

// Stands in for a chunk's text while the recall message is rendered, then is replaced by the
// chunk's tokens: letters only, on a line of its own, so BPE pre-tokenizers cut it off from
// its neighbours and it tokenizes the same alone as in the message.
std::string ChunkMarker(size_t i) {
  std::string marker = "Kvaultrecalledchunk";
  do {
    marker += static_cast<char>('a' + i % 26);
    i /= 26;
  } while (i > 0);
  return marker;
}

// Where `needle` occurs in `haystack` from `from` on; npos if it does not.
size_t FindTokens(std::span<const int32_t> haystack, std::span<const int32_t> needle, size_t from) {
  if (needle.empty() || haystack.size() < needle.size()) return std::string::npos;
  for (size_t i = from; i + needle.size() <= haystack.size(); ++i) {
    if (std::equal(needle.begin(), needle.end(), haystack.begin() + static_cast<std::ptrdiff_t>(i)))
      return i;
  }
  return std::string::npos;
}

int64_t SumTokens(std::span<const Turn> turns, size_t begin, size_t end) {
  int64_t n = 0;
  for (size_t i = begin; i < end; ++i) n += turns[i].n_tokens;
  return n;
}

bool Overlaps(const ChunkHit& a, const ChunkHit& b) {
  return a.first_pos < b.end_pos() && b.first_pos < a.end_pos();
}

void AppendRange(const TokenStore& store, int64_t first_pos, int64_t end_pos,
                 std::vector<int32_t>* out) {
  if (end_pos <= first_pos) return;
  const std::vector<int32_t> tokens = store.Tokens(first_pos, end_pos - first_pos).value();
  out->insert(out->end(), tokens.begin(), tokens.end());
}

// Moves the clear zone's start only if the zone no longer fits, and then far enough that
// slide_step tokens are free. The zone is turns [begin, new_index); returns begin.
size_t PlaceClearZone(std::span<const Turn> turns, size_t n_system, size_t new_index,
                      int64_t clear_budget, int64_t slide_step, ClearZoneState* state, bool* slid) {
  size_t begin = n_system;
  // Start where the zone started last time, never earlier, even if older turns would fit
  // again: moving the start changes the prefix and throws away its KV.
  while (state->first_turn >= 0 && begin < new_index && turns[begin].number < state->first_turn) {
    ++begin;
  }
  int64_t tokens = SumTokens(turns, begin, new_index);
  if (tokens > clear_budget) {
    // Slide past what is needed, to slide_step tokens under the budget, so the next slide
    // (and its re-prefill of the zone) is that many tokens of conversation away.
    const int64_t target = std::max<int64_t>(0, clear_budget - slide_step);
    while (begin < new_index && tokens > target) tokens -= turns[begin++].n_tokens;
  }
  // An empty zone (begin == new_index) records the new message's number: the next build's
  // zone then starts at it.
  const int64_t first = turns[begin].number;
  *slid = state->first_turn >= 0 && first != state->first_turn;
  state->first_turn = first;
  return begin;
}

}  // namespace

// Where the parts of the prompt come from, as indices into the store's turns.
struct WindowBuilder::Layout {
  size_t n_system = 0;     // turns [0, n_system) are the leading system turns
  size_t clear_begin = 0;  // turns [clear_begin, new_index) are the clear zone
  size_t new_index = 0;    // the new message
  int64_t recall_reserve = 0;
};

std::string GroupedNumber(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  for (int64_t at = static_cast<int64_t>(digits.size()) - 3; at > 0; at -= 3) {
    digits.insert(static_cast<size_t>(at), ",");
  }
  return n < 0 ? "-" + digits : digits;
}

std::string RecallAnnotation(const ChunkHit& hit, int64_t end_pos, const TokenStore* store) {
  std::string turns = hit.first_turn == hit.last_turn ? "turn " + std::to_string(hit.first_turn)
                                                      : "turns " + std::to_string(hit.first_turn) +
                                                            "-" + std::to_string(hit.last_turn);
  // When it was said: the days of its first and last turns, where they are known.
  const Turn* first = store != nullptr ? store->FindTurn(hit.first_turn) : nullptr;
  const Turn* last = store != nullptr ? store->FindTurn(hit.last_turn) : nullptr;
  std::string when = first != nullptr && first->time != 0 ? DayText(first->time) : "";
  const std::string until = last != nullptr && last->time != 0 ? DayText(last->time) : "";
  if (!until.empty() && until != when) when += (when.empty() ? "" : " to ") + until;
  if (!when.empty()) when = ", " + when;
  return "[recalled from " + turns + when + ", about " + GroupedNumber(end_pos - hit.end_pos()) +
         " tokens ago]";
}

std::string RecallMessageText(std::span<const RecalledChunk> chunks) {
  if (chunks.empty()) return "";
  std::string text(kRecallHeader);
  for (const RecalledChunk& chunk : chunks) text += "\n\n" + chunk.annotation + "\n" + chunk.text;
  return text;
}

WindowBuilder::WindowBuilder(WindowParams params) : params_(params) {
  if (params_.slide_step <= 0) params_.slide_step = params_.window / 4;
}

Result<Window> WindowBuilder::Build(const WindowInputs& inputs, ClearZoneState* state) const {
  if (inputs.store == nullptr || inputs.renderer == nullptr || state == nullptr ||
      (inputs.recall && !inputs.detokenize)) {
    return InvalidArgumentError("memory: window builder needs a store, a renderer and a state");
  }
  const TokenStore& store = *inputs.store;
  const std::span<const Turn> turns = store.turns();
  if (turns.empty()) return InvalidArgumentError("memory: no message to build a prompt for");
  Layout layout;
  layout.new_index = turns.size() - 1;
  // Only the leading system turns are in every prompt; later system messages are history
  // like any other turn. The new message is never one of them.
  while (layout.n_system < layout.new_index && turns[layout.n_system].role == Role::kSystem) {
    ++layout.n_system;
  }
  const std::vector<int32_t> generation_prompt = inputs.renderer->GenerationPrompt();
  const int64_t fixed = SumTokens(turns, 0, layout.n_system) + turns[layout.new_index].n_tokens +
                        static_cast<int64_t>(generation_prompt.size());
  const int64_t budget = int64_t{params_.window} - params_.generation_budget;
  KV_RETURN_IF_ERROR(CheckFits(fixed));
  // Reserved whether or not anything is recalled, so what recall finds never moves the
  // clear zone; capped at what the fixed part leaves, so the zone's budget is never negative.
  if (inputs.recall)
    layout.recall_reserve = std::min<int64_t>(params_.recall_budget, budget - fixed);
  Window window;
  layout.clear_begin = PlaceClearZone(turns, layout.n_system, layout.new_index,
                                      budget - fixed - layout.recall_reserve, params_.slide_step,
                                      state, &window.slid);
  return Assemble(inputs, layout, generation_prompt, std::move(window));
}

Status WindowBuilder::CheckFits(int64_t fixed_tokens) const {
  const int64_t budget = int64_t{params_.window} - params_.generation_budget;
  if (fixed_tokens <= budget) return Status::Ok();
  return InvalidArgumentError(
             "the system messages and the new message need " + std::to_string(fixed_tokens) +
             " tokens, more than the " + std::to_string(budget) + " the window of " +
             std::to_string(params_.window) + " leaves after a generation budget of " +
             std::to_string(params_.generation_budget))
      .WithDetail(ErrorDetail::kContextLengthExceeded);
}

Result<Window> WindowBuilder::Assemble(const WindowInputs& inputs, const Layout& layout,
                                       std::span<const int32_t> generation_prompt,
                                       Window window) const {
  const TokenStore& store = *inputs.store;
  const std::span<const Turn> turns = store.turns();
  const Turn& new_turn = turns[layout.new_index];
  const int64_t system_end = turns[layout.n_system].first_pos;
  window.clear_first_pos = turns[layout.clear_begin].first_pos;
  window.n_fog_tokens = window.clear_first_pos - system_end;
  if (layout.clear_begin < layout.new_index) {
    window.first_clear_turn = turns[layout.clear_begin].number;
    window.last_clear_turn = new_turn.number - 1;
  }
  // The stable part first (system turns, then the clear zone): the same tokens turn after
  // turn, so their KV is reused. What changes every turn comes after it.
  AppendRange(store, store.begin_pos(), system_end, &window.tokens);
  window.system_run = {store.begin_pos(), 0, static_cast<int64_t>(window.tokens.size())};
  const auto clear_offset = static_cast<int64_t>(window.tokens.size());
  AppendRange(store, window.clear_first_pos, new_turn.first_pos, &window.tokens);
  window.n_prefix_tokens = static_cast<int64_t>(window.tokens.size());
  window.clear_run = {window.clear_first_pos, clear_offset, window.n_prefix_tokens - clear_offset};
  // Chunks are recalled only from the fog: while the clear zone reaches back to the system
  // turns there is none, and the whole history is in the prompt. Facts are recalled anyway.
  if (layout.recall_reserve > 0 && (window.n_fog_tokens > 0 || !inputs.facts.empty())) {
    KV_ASSIGN_OR_RETURN(std::vector<int32_t> message,
                        Recall(inputs, system_end, window.clear_first_pos, layout.recall_reserve,
                               &window.recalled, &window.recall_runs));
    window.token_recall = params_.token_recall && !window.recall_runs.empty();
    for (HistoryRun& run : window.recall_runs) run.offset += window.n_prefix_tokens;
    window.n_recall_tokens = static_cast<int64_t>(message.size());
    window.tokens.insert(window.tokens.end(), message.begin(), message.end());
  }
  AppendRange(store, new_turn.first_pos, new_turn.end_pos(), &window.tokens);
  window.tokens.insert(window.tokens.end(), generation_prompt.begin(), generation_prompt.end());
  return window;
}

Result<std::vector<int32_t>> WindowBuilder::RenderTokenMessage(
    const WindowInputs& inputs, std::span<const RecalledChunk> chosen,
    std::vector<HistoryRun>* runs) const {
  // Rendered with a marker where each chunk's text goes, then split at the markers: the
  // template's own tokens (the message's opener and closer) stay as it renders them.
  std::string text(kRecallHeader);
  for (size_t i = 0; i < chosen.size(); ++i) {
    text += "\n\n" + chosen[i].annotation + "\n" +
            (chosen[i].hit.chunk_id >= 0 ? ChunkMarker(i) : chosen[i].text);
  }
  KV_ASSIGN_OR_RETURN(const std::vector<int32_t> rendered,
                      inputs.renderer->Render(Role::kSystem, text));
  std::vector<int32_t> message;
  runs->clear();
  size_t at = 0;
  for (size_t i = 0; i < chosen.size(); ++i) {
    const ChunkHit& hit = chosen[i].hit;
    if (hit.chunk_id < 0) continue;
    KV_ASSIGN_OR_RETURN(const std::vector<int32_t> marker,
                        inputs.renderer->Tokenize(ChunkMarker(i)));
    const size_t found = FindTokens(rendered, marker, at);
    if (found == std::string::npos) {
      return FailedPreconditionError(
          "the chat template's rendering of the recall message "
          "cannot be split around a chunk");
    }
    message.insert(message.end(), rendered.begin() + static_cast<std::ptrdiff_t>(at),
                   rendered.begin() + static_cast<std::ptrdiff_t>(found));
    runs->push_back({hit.first_pos, static_cast<int64_t>(message.size()), hit.n_tokens});
    AppendRange(*inputs.store, hit.first_pos, hit.end_pos(), &message);
    at = found + marker.size();
  }
  message.insert(message.end(), rendered.begin() + static_cast<std::ptrdiff_t>(at), rendered.end());
  return message;
}

Result<std::vector<int32_t>> WindowBuilder::Recall(const WindowInputs& inputs, int64_t system_end,
                                                   int64_t fog_end, int64_t reserve,
                                                   std::vector<RecalledChunk>* chosen,
                                                   std::vector<HistoryRun>* runs) const {
  // Only chunks ending before the clear zone: later ones are in the prompt already.
  KV_ASSIGN_OR_RETURN(const std::vector<ChunkHit> hits, inputs.recall(fog_end));
  const TokenStore& store = *inputs.store;
  std::vector<int32_t> message;
  bool by_tokens = params_.token_recall;
  std::vector<HistoryRun> rendered_runs;  // of the last render; *runs once it is accepted
  // The whole message for `chosen`, and where its chunks are; falls back to text for good
  // once the template cannot be split.
  auto render = [&]() -> Result<std::vector<int32_t>> {
    if (by_tokens) {
      Result<std::vector<int32_t>> tokens = RenderTokenMessage(inputs, *chosen, &rendered_runs);
      if (tokens.ok() || tokens.status().code() != StatusCode::kFailedPrecondition) return tokens;
      by_tokens = false;
      rendered_runs.clear();
      runs->clear();
      for (RecalledChunk& c : *chosen) {
        if (c.hit.chunk_id >= 0 && c.text.empty()) {
          KV_ASSIGN_OR_RETURN(const std::vector<int32_t> chunk,
                              store.Tokens(c.hit.first_pos, c.hit.n_tokens));
          c.text = inputs.detokenize(chunk);
        }
      }
    }
    return inputs.renderer->Render(Role::kSystem, RecallMessageText(*chosen));
  };
  for (const RecalledFact& fact : inputs.facts) {
    // Facts go first and are tried one by one in rank order, like chunks below: one that does
    // not fit is skipped, a shorter one after it may still fit.
    chosen->push_back({ChunkHit{.chunk_id = -1}, fact.annotation, fact.text});
    KV_ASSIGN_OR_RETURN(std::vector<int32_t> rendered, render());
    if (static_cast<int64_t>(rendered.size()) > reserve) {
      chosen->pop_back();
      continue;
    }
    message = std::move(rendered);
    *runs = rendered_runs;
  }
  for (const ChunkHit& hit : hits) {
    // Chunks wholly inside the system turns are in the prompt already; ones before
    // begin_pos can no longer be read from the store.
    const bool usable = hit.score >= params_.min_score && hit.n_tokens > 0 &&
                        hit.first_pos >= store.begin_pos() && hit.end_pos() <= fog_end &&
                        hit.end_pos() > system_end;
    // An overlapping hit would show the same text twice. Facts (chunk_id -1) have no
    // position and are not compared.
    const bool taken = std::any_of(chosen->begin(), chosen->end(), [&](const RecalledChunk& c) {
      return c.hit.chunk_id >= 0 && (c.hit.chunk_id == hit.chunk_id || Overlaps(c.hit, hit));
    });
    if (!usable || taken) continue;
    std::string text;
    if (!by_tokens) {
      KV_ASSIGN_OR_RETURN(const std::vector<int32_t> tokens,
                          store.Tokens(hit.first_pos, hit.n_tokens));
      text = inputs.detokenize(tokens);
    }
    chosen->push_back({hit, RecallAnnotation(hit, store.end_pos(), &store), std::move(text)});
    // Rendering the whole message again counts exactly what the template adds.
    KV_ASSIGN_OR_RETURN(std::vector<int32_t> rendered, render());
    if (static_cast<int64_t>(rendered.size()) > reserve) {
      chosen->pop_back();  // a smaller chunk further down may still fit
      continue;
    }
    message = std::move(rendered);
    *runs = rendered_runs;
  }
  return message;
}

}  // namespace kvault::memory
