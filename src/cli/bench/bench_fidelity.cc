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
  return RunDriver(
      app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
}

}  // namespace kvault::cli
