// engine/tokenizer.h: text <-> token ids with the model's own vocabulary (llama.cpp's
// tokenizer), plus the incremental detokenization a stream needs: a token's bytes may end in
// the middle of a UTF-8 character, so StreamDecoder holds such a tail back until it completes.
//
// Thread-safety: Tokenizer is immutable and safe to share (llama.cpp's tokenizer API is
// thread-safe). A StreamDecoder belongs to one stream.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <llama.h>

#include "kvault/base/result.h"

namespace kvault::engine {

class Model;

struct TokenizeOptions {
  bool add_special = false;    // add BOS/EOS if the vocabulary asks for them
  bool parse_special = false;  // turn "<|im_start|>" etc. into their control tokens
};

class Tokenizer {
 public:
  explicit Tokenizer(const Model& model);

  Result<std::vector<llama_token>> Tokenize(std::string_view text,
                                            TokenizeOptions options = {}) const;
  // Concatenated token texts; special tokens rendered only if render_special.
  std::string Detokenize(std::span<const llama_token> tokens, bool render_special = false) const;
  // The bytes of one token (may be part of a UTF-8 character).
  std::string TokenPiece(llama_token token, bool render_special = false) const;

  // The longest piece of any token, special ones rendered: a text of B bytes has at least
  // B / max_piece_bytes() tokens. Walks the whole vocabulary (milliseconds): compute once.
  size_t MaxPieceBytes() const;

  bool IsEndOfGeneration(llama_token token) const;
  bool IsValid(llama_token token) const { return token >= 0 && token < n_vocab_; }
  int32_t n_vocab() const { return n_vocab_; }
  llama_token bos() const;
  llama_token eos() const;

 private:
  const llama_vocab* vocab_;
  int32_t n_vocab_;
};

// Turns a stream of tokens into text chunks that are always whole, valid UTF-8: a character
// split across tokens is held back until it completes; invalid bytes become U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  // Text that is complete after `token` ("" while a character is still open).
  std::string Push(llama_token token);
  // Whatever is held back, with invalid bytes replaced by U+FFFD.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

// Length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence.
size_t CompleteUtf8Prefix(std::string_view bytes);

}  // namespace kvault::engine
