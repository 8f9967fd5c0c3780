#include "kvault/engine/tokenizer.h"

#include <algorithm>
#include <climits>

#include "kvault/base/utf8.h"
#include "kvault/engine/model.h"

namespace kvault::engine {

Tokenizer::Tokenizer(const Model& model)
    : vocab_(model.vocab()), n_vocab_(llama_vocab_n_tokens(model.vocab())) {}

Result<std::vector<llama_token>> Tokenizer::Tokenize(std::string_view text,
                                                     TokenizeOptions options) const {
  if (text.size() > static_cast<size_t>(INT32_MAX)) {
    return InvalidArgumentError("text of " + std::to_string(text.size()) +
                                " bytes is too long to tokenize");
  }
  const auto length = static_cast<int32_t>(text.size());
  // Most text takes fewer tokens than bytes; a negative return gives the exact count.
  std::vector<llama_token> tokens(text.size() / 2 + 8);
  int32_t n = llama_tokenize(vocab_, text.data(), length, tokens.data(),
                             static_cast<int32_t>(tokens.size()), options.add_special,
                             options.parse_special);
  if (n == INT32_MIN) return InvalidArgumentError("tokenization overflowed int32");
  if (n < 0) {
    tokens.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab_, text.data(), length, tokens.data(),
                       static_cast<int32_t>(tokens.size()), options.add_special,
                       options.parse_special);
    if (n < 0) return InternalError("llama_tokenize disagreed with its own size estimate");
  }
  tokens.resize(static_cast<size_t>(n));
  return tokens;
}

std::string Tokenizer::Detokenize(std::span<const llama_token> tokens, bool render_special) const {
  std::string text(tokens.size() * 4 + 16, '\0');
  int32_t n = llama_detokenize(vocab_, tokens.data(), static_cast<int32_t>(tokens.size()),
                               text.data(), static_cast<int32_t>(text.size()),
                               /*remove_special=*/false, render_special);
  if (n < 0) {
    text.resize(static_cast<size_t>(-n));
    n = llama_detokenize(vocab_, tokens.data(), static_cast<int32_t>(tokens.size()), text.data(),
                         static_cast<int32_t>(text.size()), false, render_special);
  }
  text.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return text;
}

size_t Tokenizer::MaxPieceBytes() const {
  size_t longest = 1;
  for (llama_token token = 0; token < n_vocab_; ++token) {
    longest = std::max({longest, TokenPiece(token, false).size(), TokenPiece(token, true).size()});
  }
  return longest;
}

std::string Tokenizer::TokenPiece(llama_token token, bool render_special) const {
  char buffer[128];
  int32_t n = llama_token_to_piece(vocab_, token, buffer, sizeof(buffer), 0, render_special);
  if (n >= 0) return std::string(buffer, static_cast<size_t>(n));
  std::string piece(static_cast<size_t>(-n), '\0');
  n = llama_token_to_piece(vocab_, token, piece.data(), static_cast<int32_t>(piece.size()), 0,
                           render_special);
  piece.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return piece;
}

bool Tokenizer::IsEndOfGeneration(llama_token token) const {
  return llama_vocab_is_eog(vocab_, token);
}

llama_token Tokenizer::bos() const { return llama_vocab_bos(vocab_); }
llama_token Tokenizer::eos() const { return llama_vocab_eos(vocab_); }

size_t CompleteUtf8Prefix(std::string_view bytes) {
  // Walk back over at most 3 continuation bytes to the last lead byte.
  size_t i = bytes.size();
  int continuation = 0;
  while (i > 0 && continuation < 4) {
    const auto byte = static_cast<unsigned char>(bytes[i - 1]);
    if ((byte & 0xC0) != 0x80) break;
    --i;
    ++continuation;
  }
  if (i == 0) return bytes.size();  // only continuation bytes: invalid, let it through
  const auto lead = static_cast<unsigned char>(bytes[i - 1]);
  int expected = 0;
  if ((lead & 0x80) == 0)
    expected = 0;
  else if ((lead & 0xE0) == 0xC0)
    expected = 1;
  else if ((lead & 0xF0) == 0xE0)
    expected = 2;
  else if ((lead & 0xF8) == 0xF0)
    expected = 3;
  else
    return bytes.size();  // not a lead byte: invalid, let it through
  return continuation < expected ? i - 1 : bytes.size();
}

std::string StreamDecoder::Push(llama_token token) {
  pending_ += tokenizer_->TokenPiece(token);
  const size_t complete = CompleteUtf8Prefix(pending_);
  // Complete characters only, and only valid ones: what a client is sent is exactly what the
  // conversation stores (base/utf8.h).
  std::string ready = SanitizeUtf8(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return ready;
}

std::string StreamDecoder::Flush() {
  std::string rest;
  rest.swap(pending_);
  // An unfinished sequence at the end of a stream cannot be completed any more.
  if (!rest.empty()) return "\xEF\xBF\xBD";
  return rest;
}

}  // namespace kvault::engine
