#include "kvault/engine/model_maker.h"

#include <cmath>
#include <filesystem>

#include <gtest/gtest.h>
#include <unistd.h>

#include "kvault/base/file.h"
#include "kvault/engine/batch_decoder.h"
#include "kvault/engine/chat_template.h"
#include "kvault/engine/context.h"
#include "kvault/engine/model.h"
#include "kvault/engine/model_fingerprint.h"
#include "kvault/engine/tokenizer.h"

namespace kvault::engine {
namespace {

class ModelMakerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvault_model_maker_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  MakeModelParams Params(const std::string& preset, const std::string& file, uint64_t seed) {
    MakeModelParams params;
    params.shape = FindModelPreset(preset).value();
    params.name = "test";
    params.vocab_path = DefaultVocabPath(params.shape.architecture);
    params.output_path = (dir_ / file).string();
    params.seed = seed;
    return params;
  }

  std::filesystem::path dir_;
};

TEST_F(ModelMakerTest, SameSeedWritesIdenticalBytesOtherSeedDiffers) {
  ASSERT_TRUE(MakeModel(Params("tiny", "a.gguf", 7)).ok());
  ASSERT_TRUE(MakeModel(Params("tiny", "b.gguf", 7)).ok());
  ASSERT_TRUE(MakeModel(Params("tiny", "c.gguf", 8)).ok());
  const std::vector<uint8_t> a = ReadFileToBytes((dir_ / "a.gguf").string()).value();
  const std::vector<uint8_t> b = ReadFileToBytes((dir_ / "b.gguf").string()).value();
  const std::vector<uint8_t> c = ReadFileToBytes((dir_ / "c.gguf").string()).value();
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), c.size());
  EXPECT_NE(a, c);
  // The fingerprint sees weight bytes, so the two seeds are different models to the KV engine.
  EXPECT_NE(ComputeModelFingerprint((dir_ / "a.gguf").string()).value(),
            ComputeModelFingerprint((dir_ / "c.gguf").string()).value());
  EXPECT_EQ(ComputeModelFingerprint((dir_ / "a.gguf").string()).value(),
            ComputeModelFingerprint((dir_ / "b.gguf").string()).value());
}

// The benchmark shape: Qwen2.5-0.5B's dimensions load in llama.cpp and decode. q8_0 weights
// keep the file at ~0.5 GB; the test deletes it.
TEST_F(ModelMakerTest, Q05PresetLoadsWithQwenShapes) {
  MakeModelParams params = Params("q05", "q05.gguf", 1);
  params.weight_type = WeightType::kQ8_0;
  Result<MakeModelReport> report = MakeModel(params);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_NEAR(static_cast<double>(report->n_params), 494e6, 5e6);

  Result<std::unique_ptr<Model>> model = Model::Load({.path = params.output_path});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const ModelInfo& info = (*model)->info();
  EXPECT_EQ(info.n_layer, 24);
  EXPECT_EQ(info.n_embd, 896);
  EXPECT_EQ(info.n_head, 14);
  EXPECT_EQ(info.n_head_kv, 2);
  EXPECT_EQ(info.n_vocab, 151936);

  ContextParams context_params;
  context_params.n_ctx = 256;
  context_params.n_threads = 2;
  std::unique_ptr<Context> context = Context::Create(**model, context_params).value();
  BatchDecoder decoder(context.get());
  const std::vector<llama_token> prompt = Tokenizer(**model).Tokenize("Hello there").value();
  const SequenceChunk chunk{0, 0, prompt, true};
  ASSERT_TRUE(decoder.Decode({&chunk, 1}).ok());
  for (float logit : context->Logits(decoder.OutputIndex(0))) ASSERT_TRUE(std::isfinite(logit));
}

TEST_F(ModelMakerTest, LlamaArchitectureGetsAChatMlTemplate) {
  MakeModelParams params = Params("tiny", "llama.gguf", 3);
  params.shape.architecture = "llama";
  params.vocab_path = DefaultVocabPath("llama");
  ASSERT_TRUE(MakeModel(params).ok());
  Result<std::unique_ptr<Model>> model = Model::Load({.path = params.output_path});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->info().architecture, "llama");
  EXPECT_EQ((*model)->info().n_vocab, 32000);
  const ChatMessage messages[] = {{"user", "hi"}};
  EXPECT_EQ(ChatTemplate::ForModel(**model).Apply(messages, true).value(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST_F(ModelMakerTest, BadParametersAreRejected) {
  MakeModelParams params = Params("tiny", "x.gguf", 1);
  params.vocab_path = "/nonexistent/vocab.gguf";
  EXPECT_EQ(MakeModel(params).status().code(), StatusCode::kNotFound);
  params = Params("tiny", "x.gguf", 1);
  params.shape.n_head = 3;
  EXPECT_EQ(MakeModel(params).status().code(), StatusCode::kInvalidArgument);
  params = Params("tiny", "x.gguf", 1);
  params.output_scale = -1;
  EXPECT_EQ(MakeModel(params).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(FindModelPreset("huge").ok());
  params = Params("tiny", "missing-dir/x.gguf", 1);
  EXPECT_EQ(MakeModel(params).status().code(), StatusCode::kIOError);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.gguf"));
}

}  // namespace
}  // namespace kvault::engine
