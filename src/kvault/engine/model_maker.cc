#include "kvault/engine/model_maker.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <ggml.h>
#include <gguf.h>

#include "kvault/base/file.h"
#include "kvault/base/hash.h"
#include "kvault/base/status_macros.h"
#include "kvault/build_info.h"

namespace kvault::engine {
namespace {

// ChatML, for vocabularies that carry no template of their own.
constexpr char kChatMlTemplate[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

// llama_ftype values (llama.h) for general.file_type.
constexpr uint32_t kFileTypeF16 = 1;
constexpr uint32_t kFileTypeQ8_0 = 7;
constexpr uint32_t kFileTypeF32 = 0;

struct GgufDeleter {
  void operator()(gguf_context* ctx) const { gguf_free(ctx); }
};
struct GgmlDeleter {
  void operator()(ggml_context* ctx) const { ggml_free(ctx); }
};

// What to put in one tensor: its shape and how to fill it.
struct TensorSpec {
  std::string name;
  int64_t ne0 = 0;  // row length (fan-in for matrices)
  int64_t ne1 = 1;  // rows
  bool matrix = false;
  float fill = 0;  // constant value for norms; std-dev for random tensors
  bool random = false;
};

// SplitMix64: tiny, fast and good enough for weights; seeded per tensor so the file does not
// depend on generation order.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float NextSigned() { return static_cast<float>(Next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }

 private:
  uint64_t state_;
};

std::vector<TensorSpec> TensorSpecs(const ModelShape& s, int n_vocab, float output_scale) {
  const int64_t head_dim = s.n_embd / s.n_head;
  const int64_t n_embd_kv = head_dim * s.n_head_kv;
  const float in_std = 1.0f / std::sqrt(static_cast<float>(s.n_embd));
  const float ff_std = 1.0f / std::sqrt(static_cast<float>(s.n_ff));
  std::vector<TensorSpec> specs;
  specs.push_back({"token_embd.weight", s.n_embd, n_vocab, true, 0.02f, true});
  specs.push_back({"output_norm.weight", s.n_embd, 1, false, output_scale, false});
  if (!s.tied_embeddings) specs.push_back({"output.weight", s.n_embd, n_vocab, true, in_std, true});
  const bool qkv_bias = s.architecture == "qwen2";
  for (int i = 0; i < s.n_layer; ++i) {
    const std::string blk = "blk." + std::to_string(i) + ".";
    specs.push_back({blk + "attn_norm.weight", s.n_embd, 1, false, 1.0f, false});
    specs.push_back({blk + "attn_q.weight", s.n_embd, s.n_embd, true, in_std, true});
    specs.push_back({blk + "attn_k.weight", s.n_embd, n_embd_kv, true, in_std, true});
    specs.push_back({blk + "attn_v.weight", s.n_embd, n_embd_kv, true, in_std, true});
    if (qkv_bias) {
      specs.push_back({blk + "attn_q.bias", s.n_embd, 1, false, 0.02f, true});
      specs.push_back({blk + "attn_k.bias", n_embd_kv, 1, false, 0.02f, true});
      specs.push_back({blk + "attn_v.bias", n_embd_kv, 1, false, 0.02f, true});
    }
    specs.push_back({blk + "attn_output.weight", s.n_embd, s.n_embd, true, in_std, true});
    specs.push_back({blk + "ffn_norm.weight", s.n_embd, 1, false, 1.0f, false});
    specs.push_back({blk + "ffn_gate.weight", s.n_embd, s.n_ff, true, in_std, true});
    specs.push_back({blk + "ffn_up.weight", s.n_embd, s.n_ff, true, in_std, true});
    specs.push_back({blk + "ffn_down.weight", s.n_ff, s.n_embd, true, ff_std, true});
  }
  return specs;
}

ggml_type TensorType(const TensorSpec& spec, WeightType weight_type) {
  if (!spec.matrix) return GGML_TYPE_F32;
  switch (weight_type) {
    case WeightType::kQ8_0: return GGML_TYPE_Q8_0;
    case WeightType::kF32: return GGML_TYPE_F32;
    case WeightType::kF16: return GGML_TYPE_F16;
  }
  return GGML_TYPE_F16;
}

// Copies every tokenizer.* key of the vocabulary file.
Status CopyTokenizer(const gguf_context* vocab, gguf_context* out, int* n_vocab) {
  bool has_template = false;
  *n_vocab = 0;
  for (int64_t i = 0; i < gguf_get_n_kv(vocab); ++i) {
    const std::string key = gguf_get_key(vocab, i);
    if (key.rfind("tokenizer.", 0) != 0) continue;
    has_template |= key == "tokenizer.chat_template";
    const gguf_type type = gguf_get_kv_type(vocab, i);
    if (type == GGUF_TYPE_STRING) {
      gguf_set_val_str(out, key.c_str(), gguf_get_val_str(vocab, i));
    } else if (type == GGUF_TYPE_ARRAY) {
      const size_t n = gguf_get_arr_n(vocab, i);
      if (key == "tokenizer.ggml.tokens") *n_vocab = static_cast<int>(n);
      if (gguf_get_arr_type(vocab, i) == GGUF_TYPE_STRING) {
        std::vector<const char*> strings(n);
        for (size_t j = 0; j < n; ++j) strings[j] = gguf_get_arr_str(vocab, i, j);
        gguf_set_arr_str(out, key.c_str(), strings.data(), n);
      } else {
        gguf_set_arr_data(out, key.c_str(), gguf_get_arr_type(vocab, i),
                          gguf_get_arr_data(vocab, i), n);
      }
    } else if (type == GGUF_TYPE_UINT32) {
      gguf_set_val_u32(out, key.c_str(), gguf_get_val_u32(vocab, i));
    } else if (type == GGUF_TYPE_INT32) {
      gguf_set_val_i32(out, key.c_str(), gguf_get_val_i32(vocab, i));
    } else if (type == GGUF_TYPE_BOOL) {
      gguf_set_val_bool(out, key.c_str(), gguf_get_val_bool(vocab, i));
    } else if (type == GGUF_TYPE_FLOAT32) {
      gguf_set_val_f32(out, key.c_str(), gguf_get_val_f32(vocab, i));
    } else {
      return InvalidArgumentError("vocabulary key " + key + " has an unsupported type");
    }
  }
  if (*n_vocab == 0) return InvalidArgumentError("vocabulary file has no tokenizer.ggml.tokens");
  if (!has_template) gguf_set_val_str(out, "tokenizer.chat_template", kChatMlTemplate);
  return Status::Ok();
}

void SetArchitectureKeys(const MakeModelParams& p, int n_vocab, gguf_context* out) {
  const ModelShape& s = p.shape;
  const std::string a = s.architecture + ".";
  gguf_set_val_str(out, "general.architecture", s.architecture.c_str());
  gguf_set_val_str(out, "general.name", p.name.c_str());
  const uint32_t file_type = p.weight_type == WeightType::kQ8_0  ? kFileTypeQ8_0
                             : p.weight_type == WeightType::kF32 ? kFileTypeF32
                                                                 : kFileTypeF16;
  gguf_set_val_u32(out, "general.file_type", file_type);
  gguf_set_val_u32(out, "general.quantization_version", GGML_QNT_VERSION);
  gguf_set_val_u32(out, (a + "context_length").c_str(), s.n_ctx_train);
  gguf_set_val_u32(out, (a + "embedding_length").c_str(), s.n_embd);
  gguf_set_val_u32(out, (a + "block_count").c_str(), s.n_layer);
  gguf_set_val_u32(out, (a + "feed_forward_length").c_str(), s.n_ff);
  gguf_set_val_u32(out, (a + "attention.head_count").c_str(), s.n_head);
  gguf_set_val_u32(out, (a + "attention.head_count_kv").c_str(), s.n_head_kv);
  gguf_set_val_f32(out, (a + "rope.freq_base").c_str(), s.rope_freq_base);
  gguf_set_val_f32(out, (a + "attention.layer_norm_rms_epsilon").c_str(), s.rms_norm_eps);
  gguf_set_val_u32(out, (a + "rope.dimension_count").c_str(), s.n_embd / s.n_head);
  gguf_set_val_u32(out, (a + "vocab_size").c_str(), n_vocab);
  gguf_set_val_str(out, "kvault.generator", "kvault make-model");
  gguf_set_val_u64(out, "kvault.seed", p.seed);
  gguf_set_val_f32(out, "kvault.output_scale", p.output_scale);
}

// Fills one tensor row by row and appends its bytes (padded to `alignment`) to the file.
void WriteTensorData(const TensorSpec& spec, ggml_type type, uint64_t seed, size_t alignment,
                     ByteSink* sink) {
  SplitMix64 rng(Hash64(spec.name, seed));
  const float scale = std::sqrt(3.0f) * spec.fill;  // uniform[-a, a] has std a/sqrt(3)
  std::vector<float> row(static_cast<size_t>(spec.ne0));
  const size_t row_bytes = ggml_row_size(type, spec.ne0);
  std::vector<uint8_t> encoded(row_bytes);
  for (int64_t r = 0; r < spec.ne1; ++r) {
    for (float& v : row) v = spec.random ? rng.NextSigned() * scale : spec.fill;
    if (type == GGML_TYPE_F32) {
      std::memcpy(encoded.data(), row.data(), row_bytes);
    } else if (type == GGML_TYPE_F16) {
      ggml_fp32_to_fp16_row(row.data(), reinterpret_cast<ggml_fp16_t*>(encoded.data()), spec.ne0);
    } else {
      ggml_quantize_chunk(type, row.data(), encoded.data(), 0, 1, spec.ne0, nullptr);
    }
    sink->Append(encoded);
  }
  const size_t n_bytes = row_bytes * static_cast<size_t>(spec.ne1);
  const std::vector<uint8_t> padding(GGML_PAD(n_bytes, alignment) - n_bytes, 0);
  sink->Append(padding);
}

}  // namespace

Result<WeightType> ParseWeightType(std::string_view name) {
  if (name == "f16") return WeightType::kF16;
  if (name == "q8_0") return WeightType::kQ8_0;
  if (name == "f32") return WeightType::kF32;
  return InvalidArgumentError("unknown weight type '" + std::string(name) +
                              "' (expected f16, q8_0 or f32)");
}

std::string DefaultVocabPath(const std::string& architecture) {
  const char* dir_override = std::getenv("KVAULT_VOCAB_DIR");
  const std::string dir = dir_override != nullptr ? std::string(dir_override)
                                                  : std::string(kLlamaSourceDir) + "/models";
  const std::string vocab = architecture == "llama" ? "llama-spm" : "qwen2";
  return dir + "/ggml-vocab-" + vocab + ".gguf";
}

Result<MakeModelReport> MakeModel(const MakeModelParams& params) {
  KV_RETURN_IF_ERROR(ValidateModelShape(params.shape));
  if (!std::isfinite(params.output_scale) || params.output_scale <= 0) {
    return InvalidArgumentError("output scale must be a positive number");
  }
  if (!PathExists(params.vocab_path)) {
    return NotFoundError("vocabulary file not found: " + params.vocab_path +
                         " (pass --vocab, or run scripts/bootstrap.sh for llama.cpp's models/)");
  }
  gguf_init_params vocab_params{/*no_alloc=*/true, /*ctx=*/nullptr};
  std::unique_ptr<gguf_context, GgufDeleter> vocab(
      gguf_init_from_file(params.vocab_path.c_str(), vocab_params));
  if (!vocab) return InvalidArgumentError("not a GGUF vocabulary file: " + params.vocab_path);

  std::unique_ptr<gguf_context, GgufDeleter> out(gguf_init_empty());
  MakeModelReport report;
  KV_RETURN_IF_ERROR(CopyTokenizer(vocab.get(), out.get(), &report.n_vocab));
  SetArchitectureKeys(params, report.n_vocab, out.get());

  const std::vector<TensorSpec> specs =
      TensorSpecs(params.shape, report.n_vocab, params.output_scale);
  ggml_init_params meta_params{ggml_tensor_overhead() * (specs.size() + 1), nullptr,
                               /*no_alloc=*/true};
  std::unique_ptr<ggml_context, GgmlDeleter> meta(ggml_init(meta_params));
  for (const TensorSpec& spec : specs) {
    ggml_tensor* t = spec.ne1 > 1 || spec.matrix
                         ? ggml_new_tensor_2d(meta.get(), TensorType(spec, params.weight_type),
                                              spec.ne0, spec.ne1)
                         : ggml_new_tensor_1d(meta.get(), GGML_TYPE_F32, spec.ne0);
    ggml_set_name(t, spec.name.c_str());
    gguf_add_tensor(out.get(), t);
    report.n_params += static_cast<uint64_t>(spec.ne0 * spec.ne1);
  }
  report.n_tensors = static_cast<int>(specs.size());

  KV_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> file,
                      AtomicFileWriter::Open(params.output_path));
  std::vector<uint8_t> header(gguf_get_meta_size(out.get()));
  gguf_get_meta_data(out.get(), header.data());
  file->Append(header);
  const size_t alignment = gguf_get_alignment(out.get());
  for (const TensorSpec& spec : specs) {
    WriteTensorData(spec, TensorType(spec, params.weight_type), params.seed, alignment, file.get());
  }
  report.n_bytes = file->size();
  KV_RETURN_IF_ERROR(file->Commit());
  return report;
}

}  // namespace kvault::engine
