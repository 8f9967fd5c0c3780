// kvault bench fidelity: what the lossy at-rest encodings (q8, q4) cost in model output,
// against the lossless f16 blocks. For each of --prompts prompts: the prompt's KV is computed
// once, exported, encoded, decoded and imported back into another sequence of the same
// context; then the next token's logits are computed from the original cells and from the
// restored ones. Reported per encoding: mean and max KL divergence of the next-token
// distribution (restored || original), top-1 agreement, the relative L2 error of K and V and
// of the attention output of that next token (every layer's, before the output projection,
// read through llama.cpp's graph callback), and the bytes per token at rest (with and
// without zstd).
//
// Random-weight models have nearly flat logits, which makes KL small whatever the error;
// run it on a model made with `make-model --output-scale 8` as well (peaked distributions).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string_view>

#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"

#include "kvault/base/status_macros.h"
#include "kvault/conversation/recall_kv.h"
#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/tokenizer.h"
#include "kvault/kv/snapshot_codec.h"
#include "kvault/kv/snapshot_layout.h"

namespace kvault::cli {
namespace {

struct FidelityOptions : BenchOptions {
  int prompts = 100;
  int prompt_tokens = 256;
  bool recall_kv = false;  // --recall-kv: recalled chunks' KV shifted into place instead
  int chunks = 8;          // recalled chunks per prompt (--recall-kv)
};

struct EncodingStats {
  std::vector<double> kl;
  int top1_agree = 0;
  double err2 = 0, ref2 = 0;            // K and V: sums of squared differences and values
  double attn_err2 = 0, attn_ref2 = 0;  // attention outputs: the same
  double bytes_plain = 0, bytes_zstd = 0, tokens = 0;
};

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal
      int e = -1;
      uint32_t m = mant;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::vector<double> Softmax(std::span<const float> logits) {
  const float max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(double(logits[i]) - max);
  for (double& x : p) x /= sum;
  return p;
}

double Kl(const std::vector<double>& p, const std::vector<double>& q) {
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] > 0) kl += p[i] * std::log(p[i] / std::max(q[i], 1e-300));
  }
  return kl;
}

size_t Argmax(std::span<const float> v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// "kqv_out-<layer>" exactly: views of it are named "kqv_out-<layer> (reshaped)" and the like.
bool IsAttentionOutput(std::string_view name) {
  constexpr std::string_view kPrefix = "kqv_out-";
  if (!name.starts_with(kPrefix) || name.size() == kPrefix.size()) return false;
  name.remove_prefix(kPrefix.size());
  return std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The attention outputs ("kqv_out-<layer>") of the decodes made while `armed`, layer by
// layer in graph order: a llama.cpp graph evaluation callback.
struct AttentionCapture {
  bool armed = false;
  std::vector<std::vector<float>> outputs;

  static bool Observe(ggml_tensor* tensor, bool ask, void* data) {
    auto* self = static_cast<AttentionCapture*>(data);
    const bool wanted = self->armed && tensor->type == GGML_TYPE_F32 &&
                        ggml_is_contiguous(tensor) && IsAttentionOutput(ggml_get_name(tensor));
    if (ask) return wanted;  // asked whether to show it computed
    if (wanted) {
      std::vector<float>& out = self->outputs.emplace_back(ggml_nelements(tensor));
      ggml_backend_tensor_get(tensor, out.data(), 0, ggml_nbytes(tensor));
    }
    return true;  // go on computing
  }
};

Result<std::vector<float>> NextLogits(engine::Context& context, llama_seq_id seq, llama_pos pos,
                                      llama_token token, AttentionCapture* capture) {
  capture->outputs.clear();
  capture->armed = true;
  struct Disarm {
    AttentionCapture* capture;
    ~Disarm() { capture->armed = false; }
  } disarm{capture};
  engine::BatchDecoder decoder(&context);
  const engine::SequenceChunk chunk{seq, pos, {&token, 1}, true};
  KV_RETURN_IF_ERROR(decoder.Decode({&chunk, 1}));
  std::span<const float> logits = context.Logits(decoder.OutputIndex(0));
  return std::vector<float>(logits.begin(), logits.end());
}

// One prompt: original next-token logits vs those after each encoding round trip.
Status MeasurePrompt(engine::Context& context, AttentionCapture* capture,
                     const std::vector<llama_token>& prompt,
                     std::map<std::string, EncodingStats>* stats) {
  const auto n = static_cast<llama_pos>(prompt.size() - 1);
  context.ClearAll();
  engine::BatchDecoder decoder(&context);
  const engine::SequenceChunk chunk{0, 0, std::span<const llama_token>(prompt).first(n), false};
  KV_RETURN_IF_ERROR(decoder.Decode({&chunk, 1}));
  KV_ASSIGN_OR_RETURN(std::vector<uint8_t> exported, context.ExportSequence(0));
  KV_ASSIGN_OR_RETURN(kv::KvBlock block, kv::ParseSnapshot(exported));
  KV_ASSIGN_OR_RETURN(std::vector<float> original,
                      NextLogits(context, 0, n, prompt.back(), capture));
  const std::vector<std::vector<float>> original_attention = capture->outputs;
  if (original_attention.empty()) {
    return InternalError("llama.cpp showed no attention output (kqv_out) to the callback");
  }
  const std::vector<double> p = Softmax(original);
  kv::BlockMeta meta;
  meta.tokens.assign(prompt.begin(), prompt.begin() + n);
  for (const char* name : {"f16", "q8", "q4"}) {
    EncodingStats& s = (*stats)[name];
    kv::CodecOptions codec;
    KV_ASSIGN_OR_RETURN(codec.encoding, kv::ParseBlockEncoding(name));
    KV_ASSIGN_OR_RETURN(std::vector<uint8_t> encoded, kv::EncodeBlock(block, meta, codec));
    codec.zstd = true;
    KV_ASSIGN_OR_RETURN(std::vector<uint8_t> compressed, kv::EncodeBlock(block, meta, codec));
    s.bytes_plain += static_cast<double>(encoded.size());
    s.bytes_zstd += static_cast<double>(compressed.size());
    s.tokens += n;
    KV_ASSIGN_OR_RETURN(kv::DecodedBlock decoded, kv::DecodeBlock(encoded));
    const auto* a = reinterpret_cast<const uint16_t*>(block.data.data());
    const auto* b = reinterpret_cast<const uint16_t*>(decoded.block.data.data());
    for (size_t i = 0; i < block.data.size() / 2; ++i) {
      const double x = HalfToFloat(a[i]), y = HalfToFloat(b[i]);
      s.err2 += (x - y) * (x - y);
      s.ref2 += x * x;
    }
    context.ClearSequence(1);
    KV_RETURN_IF_ERROR(
        context.ImportSequence(1, kv::SerializeSnapshot(decoded.block, 1, context.n_stream())));
    KV_ASSIGN_OR_RETURN(std::vector<float> restored,
                        NextLogits(context, 1, n, prompt.back(), capture));
    if (capture->outputs.size() != original_attention.size()) {
      return InternalError("attention outputs of the restored run do not match the original's");
    }
    for (size_t l = 0; l < original_attention.size(); ++l) {
      const std::vector<float>& x = original_attention[l];
      const std::vector<float>& y = capture->outputs[l];
      if (x.size() != y.size()) return InternalError("attention output sizes differ");
      for (size_t i = 0; i < x.size(); ++i) {
        s.attn_err2 += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
        s.attn_ref2 += double(x[i]) * x[i];
      }
    }
    s.kl.push_back(Kl(p, Softmax(restored)));
    s.top1_agree += Argmax(original) == Argmax(restored);
    context.ClearSequence(1);
  }
  return Status::Ok();
}

Result<Json> Measure(const FidelityOptions& options) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model,
                      engine::Model::Load({.path = options.model_path}));
  engine::ContextParams params;
  params.n_ctx = static_cast<uint32_t>(2 * options.prompt_tokens + 64);
  params.n_seq_max = 2;
  params.n_threads = options.threads > 0 ? options.threads : DefaultThreadCount();
  AttentionCapture capture;
  params.eval_callback = &AttentionCapture::Observe;
  params.eval_callback_data = &capture;
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Context> context,
                      engine::Context::Create(*model, params));
  const engine::Tokenizer tokenizer(*model);
  std::mt19937 rng(11);
  const int n_vocab = tokenizer.n_vocab();
  std::map<std::string, EncodingStats> stats;
  for (int i = 0; i < options.prompts; ++i) {
    // Token ids drawn from the vocabulary's ordinary range: content varies, shape is fixed.
    std::vector<llama_token> prompt(static_cast<size_t>(options.prompt_tokens));
    for (llama_token& t : prompt) t = static_cast<llama_token>(rng() % std::min(n_vocab, 100000));
    KV_RETURN_IF_ERROR(MeasurePrompt(*context, &capture, prompt, &stats));
  }
  Json rows = Json::array();
  for (const char* name : {"f16", "q8", "q4"}) {
    const EncodingStats& s = stats[name];
    rows.push_back(
        {{"encoding", name},
         {"kl_mean", Summarize(s.kl).mean},
         {"kl_max", *std::max_element(s.kl.begin(), s.kl.end())},
         {"top1_agreement", double(s.top1_agree) / options.prompts},
         {"kv_relative_l2_error", std::sqrt(s.err2 / std::max(s.ref2, 1e-30))},
         {"attention_relative_l2_error", std::sqrt(s.attn_err2 / std::max(s.attn_ref2, 1e-30))},
         {"bytes_per_token", s.bytes_plain / s.tokens},
         {"bytes_per_token_zstd", s.bytes_zstd / s.tokens}});
  }
  return Json{{"model", options.model_path},
              {"prompts", options.prompts},
              {"prompt_tokens", options.prompt_tokens},
              {"results", rows}};
}

// --- --recall-kv: recalled chunks put back as KV (conversation/recall_kv.h) -------------
//
// A conversation's history (kHistoryTokens) is computed once, as in the windows it passed
// through; its 128-token chunks are the recall pool. Each prompt is a fixed stable prefix
// (system turns and clear zone), a recall header, `chunks` chunks drawn from the pool each
// under its annotation, and a question. The reference is a full prefill of that prompt; each
// variant prefills the same prompt except the chunks, whose KV computed in the history is
// shifted into place (PutKvPieces, the server's own path), after an encode/decode round trip
// through the at-rest encoding; blend prefills each chunk's first share instead. Also shown:
// the same prompts' own KV restored through q8 (the prefix-restore figure), to set the recall
// error beside what q8 at rest costs alone.

constexpr int kHistoryTokens = 4096;
constexpr int kPrefixTokens = 256;
constexpr int kHeaderTokens = 16;
constexpr int kAnnotationTokens = 12;
constexpr int kQuestionTokens = 24;
constexpr int kChunkTokens = 128;
constexpr llama_seq_id kHistorySeq = 0, kReferenceSeq = 1, kVariantSeq = 2, kScratchSeq = 3,
                       kShiftedSeq = 4;
// The control computes the reference prompt this much further on, then shifts its chunks back.
constexpr llama_pos kControlOffset = 2048;
constexpr int kControlPrompts = 10;

struct RecallVariant {
  std::string name;
  double fraction = 0;  // blend: share of each chunk prefilled
  std::string encoding;
};

struct VariantStats {
  std::vector<double> kl;
  int top1_agree = 0;
  int64_t prefilled = 0;  // tokens decoded for the recall block, all prompts
};

Status DecodeRun(engine::Context& context, llama_seq_id seq, llama_pos first,
                 std::span<const llama_token> tokens, bool logits_for_last) {
  engine::BatchDecoder decoder(&context);
  for (size_t at = 0; at < tokens.size(); at += 512) {
    const size_t n = std::min<size_t>(512, tokens.size() - at);
    const bool last = at + n == tokens.size();
    const engine::SequenceChunk chunk{seq, first + static_cast<llama_pos>(at),
                                      tokens.subspan(at, n), last && logits_for_last};
    KV_RETURN_IF_ERROR(decoder.Decode({&chunk, 1}));
  }
  return Status::Ok();
}

std::vector<float> LastLogits(engine::Context& context) {
  // BatchDecoder outputs only the flagged token: the last output of the last decode.
  std::span<const float> logits = context.Logits(-1);
  return {logits.begin(), logits.end()};
}

Result<kv::KvBlock> RoundTrip(const kv::KvBlock& block, const std::string& encoding) {
  kv::CodecOptions codec;
  KV_ASSIGN_OR_RETURN(codec.encoding, kv::ParseBlockEncoding(encoding));
  kv::BlockMeta meta;
  meta.tokens.assign(block.n_tokens, 0);
  KV_ASSIGN_OR_RETURN(std::vector<uint8_t> encoded, kv::EncodeBlock(block, meta, codec));
  KV_ASSIGN_OR_RETURN(kv::DecodedBlock decoded, kv::DecodeBlock(encoded));
  return std::move(decoded.block);
}

Result<Json> MeasureRecallKv(const FidelityOptions& options) {
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model,
                      engine::Model::Load({.path = options.model_path}));
  const int recall_tokens = kHeaderTokens + options.chunks * (kAnnotationTokens + kChunkTokens);
  engine::ContextParams params;
  params.n_ctx = static_cast<uint32_t>(kHistoryTokens + 4 * (kPrefixTokens + recall_tokens) + 512);
  params.n_seq_max = 5;
  params.kv_unified = true;
  params.n_threads = options.threads > 0 ? options.threads : DefaultThreadCount();
  KV_ASSIGN_OR_RETURN(std::unique_ptr<engine::Context> context,
                      engine::Context::Create(*model, params));
  if (!context->CanShift()) return FailedPreconditionError("llama.cpp cannot shift this model");
  const engine::Tokenizer tokenizer(*model);
  std::mt19937 rng(13);
  const int n_vocab = std::min(tokenizer.n_vocab(), 100000);
  auto random_tokens = [&](int n) {
    std::vector<llama_token> tokens(static_cast<size_t>(n));
    for (llama_token& t : tokens) t = static_cast<llama_token>(rng() % n_vocab);
    return tokens;
  };
  // The history, computed once; its KV is what the chunks were kept as.
  const std::vector<llama_token> history = random_tokens(kHistoryTokens);
  KV_RETURN_IF_ERROR(DecodeRun(*context, kHistorySeq, 0, history, false));
  KV_ASSIGN_OR_RETURN(std::vector<uint8_t> history_state, context->ExportSequence(kHistorySeq));
  KV_ASSIGN_OR_RETURN(const kv::KvBlock history_kv, kv::ParseSnapshot(history_state));
  history_state = {};
  context->ClearSequence(kHistorySeq);
  // The stable prefix, shared by every prompt (its cells too, through seq_cp).
  const std::vector<llama_token> prefix = random_tokens(kPrefixTokens);
  KV_RETURN_IF_ERROR(DecodeRun(*context, kHistorySeq, 0, prefix, false));

  std::vector<RecallVariant> variants = {{"reuse", 0, "f16"}, {"reuse", 0, "q8"}};
  for (double f : {0.125, 0.25, 0.5}) variants.push_back({"blend", f, "q8"});
  std::vector<VariantStats> stats(variants.size());
  VariantStats restore_q8;  // the prompt's own KV through q8: no recall at all
  // Control: the chunks' KV computed after the very same text as in the reference, only at
  // other positions, then shifted back: what the shift alone costs (f16 rounding).
  VariantStats control;
  const int n_pool = kHistoryTokens / kChunkTokens;
  for (int i = 0; i < options.prompts; ++i) {
    // The prompt: prefix, header, chunks under annotations, question.
    std::vector<int> picked(static_cast<size_t>(n_pool));
    for (int k = 0; k < n_pool; ++k) picked[static_cast<size_t>(k)] = k;
    std::shuffle(picked.begin(), picked.end(), rng);
    picked.resize(static_cast<size_t>(options.chunks));
    const std::vector<llama_token> header = random_tokens(kHeaderTokens);
    std::vector<std::vector<llama_token>> annotations;
    for (int k = 0; k < options.chunks; ++k)
      annotations.push_back(random_tokens(kAnnotationTokens));
    const std::vector<llama_token> question = random_tokens(kQuestionTokens);
    std::vector<llama_token> recall = header;  // everything after the prefix
    for (int k = 0; k < options.chunks; ++k) {
      recall.insert(recall.end(), annotations[k].begin(), annotations[k].end());
      const auto first = history.begin() + picked[k] * kChunkTokens;
      recall.insert(recall.end(), first, first + kChunkTokens);
    }
    recall.insert(recall.end(), question.begin(), question.end());
    // Reference: the whole prompt prefilled; its KV (all but the last token) kept for the
    // q8 restore row.
    context->ClearSequence(kReferenceSeq);
    context->CopySequence(kHistorySeq, kReferenceSeq, 0, kPrefixTokens);
    const std::span<const llama_token> body(recall);
    KV_RETURN_IF_ERROR(
        DecodeRun(*context, kReferenceSeq, kPrefixTokens, body.first(body.size() - 1), false));
    KV_ASSIGN_OR_RETURN(std::vector<uint8_t> reference_state,
                        context->ExportSequence(kReferenceSeq));
    const auto last_pos = static_cast<llama_pos>(kPrefixTokens + body.size() - 1);
    KV_RETURN_IF_ERROR(DecodeRun(*context, kReferenceSeq, last_pos, body.last(1), true));
    const std::vector<float> reference = LastLogits(*context);
    const std::vector<double> p = Softmax(reference);
    auto score = [&](VariantStats& s, const std::vector<float>& logits) {
      s.kl.push_back(Kl(p, Softmax(logits)));
      s.top1_agree += Argmax(reference) == Argmax(logits);
    };
    {
      KV_ASSIGN_OR_RETURN(kv::KvBlock own, kv::ParseSnapshot(reference_state));
      KV_ASSIGN_OR_RETURN(kv::KvBlock restored, RoundTrip(own, "q8"));
      context->ClearSequence(kVariantSeq);
      KV_RETURN_IF_ERROR(context->ImportSequence(
          kVariantSeq, kv::SerializeSnapshot(restored, kVariantSeq, context->n_stream())));
      KV_RETURN_IF_ERROR(DecodeRun(*context, kVariantSeq, last_pos, body.last(1), true));
      score(restore_q8, LastLogits(*context));
    }
    context->ClearSequence(kReferenceSeq);
    // Where each chunk sits in the prompt (positions) and in `recall`.
    std::vector<llama_pos> chunk_pos;
    for (int k = 0, at = kHeaderTokens; k < options.chunks; ++k) {
      at += kAnnotationTokens;
      chunk_pos.push_back(static_cast<llama_pos>(kPrefixTokens + at));
      at += kChunkTokens;
    }
    if (i < kControlPrompts) {
      std::vector<llama_token> whole(prefix.begin(), prefix.end());
      whole.insert(whole.end(), recall.begin(), recall.end() - 1);
      context->ClearSequence(kShiftedSeq);
      KV_RETURN_IF_ERROR(DecodeRun(*context, kShiftedSeq, kControlOffset, whole, false));
      KV_ASSIGN_OR_RETURN(std::vector<uint8_t> shifted_state, context->ExportSequence(kShiftedSeq));
      context->ClearSequence(kShiftedSeq);
      KV_ASSIGN_OR_RETURN(const kv::KvBlock shifted, kv::ParseSnapshot(shifted_state));
      context->ClearSequence(kVariantSeq);
      context->CopySequence(kHistorySeq, kVariantSeq, 0, kPrefixTokens);
      llama_pos pos = kPrefixTokens;
      for (int k = 0; k < options.chunks; ++k) {
        const std::span<const llama_token> before(recall.begin() + (pos - kPrefixTokens),
                                                  recall.begin() + (chunk_pos[k] - kPrefixTokens));
        KV_RETURN_IF_ERROR(DecodeRun(*context, kVariantSeq, pos, before, false));
        KV_ASSIGN_OR_RETURN(kv::KvBlock part,
                            kv::SliceBlock(shifted, kControlOffset + chunk_pos[k], kChunkTokens));
        const conversation::KvPiece piece =
            conversation::MakeKvPiece(part, chunk_pos[k], kScratchSeq, context->n_stream());
        KV_RETURN_IF_ERROR(
            conversation::PutKvPieces(*context, kScratchSeq, kVariantSeq, {&piece, 1}));
        pos = chunk_pos[k] + kChunkTokens;
      }
      KV_RETURN_IF_ERROR(DecodeRun(*context, kVariantSeq, pos, question, true));
      score(control, LastLogits(*context));
    }
    for (size_t v = 0; v < variants.size(); ++v) {
      const RecallVariant& variant = variants[v];
      context->ClearSequence(kVariantSeq);
      context->CopySequence(kHistorySeq, kVariantSeq, 0, kPrefixTokens);
      const int lead = static_cast<int>(std::ceil(variant.fraction * kChunkTokens));
      llama_pos pos = kPrefixTokens;
      size_t at = 0;  // in `recall`
      std::vector<llama_token> pending(header.begin(), header.end());
      at += header.size();
      for (int k = 0; k < options.chunks; ++k) {
        // The annotation and the chunk's blended share are decoded, then the rest is put.
        pending.insert(pending.end(), annotations[k].begin(), annotations[k].end());
        at += annotations[k].size();
        pending.insert(pending.end(), recall.begin() + static_cast<std::ptrdiff_t>(at),
                       recall.begin() + static_cast<std::ptrdiff_t>(at + lead));
        KV_RETURN_IF_ERROR(DecodeRun(*context, kVariantSeq, pos, pending, false));
        pos += static_cast<llama_pos>(pending.size());
        stats[v].prefilled += static_cast<int64_t>(pending.size());
        pending.clear();
        const auto computed_at = static_cast<llama_pos>(picked[k] * kChunkTokens + lead);
        KV_ASSIGN_OR_RETURN(kv::KvBlock part,
                            kv::SliceBlock(history_kv, computed_at, kChunkTokens - lead));
        KV_ASSIGN_OR_RETURN(part, RoundTrip(part, variant.encoding));
        const conversation::KvPiece piece =
            conversation::MakeKvPiece(part, pos, kScratchSeq, context->n_stream());
        KV_RETURN_IF_ERROR(
            conversation::PutKvPieces(*context, kScratchSeq, kVariantSeq, {&piece, 1}));
        pos += kChunkTokens - lead;
        at += kChunkTokens;
      }
      KV_RETURN_IF_ERROR(DecodeRun(*context, kVariantSeq, pos, question, true));
      stats[v].prefilled += static_cast<int64_t>(question.size());
      score(stats[v], LastLogits(*context));
    }
    context->ClearSequence(kVariantSeq);
    if ((i + 1) % 10 == 0)
      std::fprintf(stderr, "fidelity --recall-kv: %d of %d prompts\n", i + 1, options.prompts);
  }
  Json rows = Json::array();
  auto row = [&](const std::string& mode, double fraction, const std::string& encoding,
                 const VariantStats& s, double prefilled) {
    rows.push_back({{"mode", mode},
                    {"recompute_fraction", fraction},
                    {"encoding", encoding},
                    {"kl_mean", Summarize(s.kl).mean},
                    {"kl_max", *std::max_element(s.kl.begin(), s.kl.end())},
                    {"top1_agreement", double(s.top1_agree) / static_cast<double>(s.kl.size())},
                    {"recall_tokens_prefilled_per_prompt", prefilled}});
  };
  row("prefix restore (no recall)", 0, "q8", restore_q8, 0);
  row("control: same text, shifted", 0, "f16", control, 0);
  rows.back()["prompts"] = std::min(options.prompts, kControlPrompts);
  for (size_t v = 0; v < variants.size(); ++v) {
    row(variants[v].name, variants[v].fraction, variants[v].encoding, stats[v],
        double(stats[v].prefilled) / options.prompts);
  }
  return Json{{"model", options.model_path},
              {"prompts", options.prompts},
              {"recall_kv", true},
              {"chunks", options.chunks},
              {"recall_block_tokens", recall_tokens},
              {"prompt_tokens", kPrefixTokens + recall_tokens + kQuestionTokens},
              {"results", rows}};
}

void PrintRecallTable(const Json& report) {
  std::printf("model %s, %d prompts of %d tokens, recall blocks of %d tokens (%d chunks)\n",
              report["model"].get_ref<const std::string&>().c_str(), report["prompts"].get<int>(),
              report["prompt_tokens"].get<int>(), report["recall_block_tokens"].get<int>(),
              report["chunks"].get<int>());
  std::printf("%-28s %9s %9s %12s %12s %8s %12s\n", "mode", "recompute", "at rest", "KL mean",
              "KL max", "top-1", "prefilled");
  for (const Json& r : report["results"]) {
    std::printf("%-28s %9.3f %9s %12.3e %12.3e %8.3f %12.1f\n",
                r["mode"].get<std::string>().c_str(), NumberOr(r, "recompute_fraction", 0),
                r["encoding"].get<std::string>().c_str(), NumberOr(r, "kl_mean", 0),
                NumberOr(r, "kl_max", 0), NumberOr(r, "top1_agreement", 0),
                NumberOr(r, "recall_tokens_prefilled_per_prompt", 0));
  }
}

void PrintTable(const Json& report) {
  std::printf("model %s, %d prompts of %d tokens\n",
              report["model"].get_ref<const std::string&>().c_str(), report["prompts"].get<int>(),
              report["prompt_tokens"].get<int>());
  std::printf("%-8s %12s %12s %8s %12s %12s %12s %12s\n", "encoding", "KL mean", "KL max", "top-1",
              "K/V rel err", "attn rel err", "B/token", "B/token zstd");
  for (const Json& r : report["results"]) {
    std::printf("%-8s %12.3e %12.3e %8.3f %12.3e %12.3e %12.1f %12.1f\n",
                r["encoding"].get<std::string>().c_str(), NumberOr(r, "kl_mean", 0),
                NumberOr(r, "kl_max", 0), NumberOr(r, "top1_agreement", 0),
                NumberOr(r, "kv_relative_l2_error", 0),
                NumberOr(r, "attention_relative_l2_error", 0), NumberOr(r, "bytes_per_token", 0),
                NumberOr(r, "bytes_per_token_zstd", 0));
  }
}

}  // namespace

int RunBenchFidelity(int argc, char** argv) {
  CLI::App app("Output fidelity and size of KV blocks at rest: f16 vs q8 vs q4.", "bench fidelity");
  FidelityOptions o;
  AddModelOption(app, o);
  AddBoundedOption(app, "--prompts", o.prompts, "prompts", 1, 100000);
  AddBoundedOption(app, "--prompt-tokens", o.prompt_tokens, "tokens per prompt", 2, 1 << 16);
  AddThreadsOption(app, o);
  app.add_flag("--recall-kv", o.recall_kv,
               "recalled chunks put back as KV (reuse, blend) vs a full prefill of the prompt, "
               "instead of at-rest encodings of a restored prefix");
  AddBoundedOption(app, "--chunks", o.chunks, "recalled chunks per prompt (--recall-kv)", 1, 32);
  return RunDriver(
      app, o, argc, argv, [&] { return o.recall_kv ? MeasureRecallKv(o) : Measure(o); },
      [&](const Json& report) {
        if (report.contains("recall_kv")) {
          PrintRecallTable(report);
        } else {
          PrintTable(report);
        }
      });
}

}  // namespace kvault::cli
