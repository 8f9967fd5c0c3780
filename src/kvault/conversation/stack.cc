#include "kvault/conversation/stack.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <unistd.h>

#include "kvault/base/file.h"
#include "kvault/base/json.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/kv/context_blocks.h"
#include "kvault/store/remote_tier.h"

namespace kvault::conversation {
namespace {

// "q8", "q8+zstd", ...: --cache-encoding and --recall-kv-encoding.
Result<kv::CodecOptions> ParseCodec(const std::string& encoding) {
  kv::CodecOptions codec;
  const size_t plus = encoding.find('+');
  KV_ASSIGN_OR_RETURN(codec.encoding, kv::ParseBlockEncoding(encoding.substr(0, plus)));
  codec.zstd = plus != std::string::npos;
  return codec;
}

constexpr int kMaxSequences = 256;  // ref: llama.cpp src/llama-cparams.h LLAMA_MAX_SEQ

int CellsPerSequence(const StackConfig& config) {
  return config.max_model_len > 0 ? config.max_model_len : config.window;
}

// The block store of this context: its namespace names the disk folder, so blocks of other
// models or settings never meet.
Result<std::unique_ptr<store::BlockStore>> OpenBlockStore(
    const StackConfig& config, engine::Context& context, StorageHealth* health,
    const std::shared_ptr<store::RedisClient>& redis) {
  KV_ASSIGN_OR_RETURN(kv::SnapshotShape shape, kv::ProbeKvShape(context, 0));
  store::BlockStoreParams params;
  params.health = health;
  params.space = kv::BlockNamespaceOf(context, shape, static_cast<uint32_t>(config.block_size));
  params.shape = shape;
  params.ram_budget_bytes = static_cast<uint64_t>(config.cache_ram_mb) << 20;
  params.disk_budget_bytes = static_cast<uint64_t>(config.cache_disk_gb * (1ull << 30));
  params.eviction = config.eviction;
  params.ttl_s = config.cache_ttl_s;
  if (redis != nullptr) {
    params.remote =
        std::make_shared<store::RemoteTier>(redis, config.remote_prefix, config.remote_ttl_s);
  }
  KV_ASSIGN_OR_RETURN(params.codec, ParseCodec(config.cache_encoding));
  if (config.cache_disk_gb > 0) {
    params.disk_dir = config.cache_dir + "/" + kv::BlockNamespaceDigest(params.space);
    // The reserve is at most a tenth of the file system: 64 MB kept free on an 8 MB one
    // would be a disk tier that never writes. (The folder may not exist yet: its nearest
    // existing parent is on the same file system.)
    std::filesystem::path existing = std::filesystem::absolute(config.cache_dir);
    while (!existing.empty() && !PathExists(existing.string())) existing = existing.parent_path();
    if (const Result<uint64_t> size = DiskSizeBytes(existing.string()); size.ok()) {
      params.disk_reserve_bytes = std::min(params.disk_reserve_bytes, *size / 10);
    }
  }
  return store::BlockStore::Open(params);
}

// --upstream: a RAM tier that stays empty (no KV is computed here), so that the cache's
// routes and metrics report zeros rather than needing a mode of their own.
Result<std::unique_ptr<store::BlockStore>> OpenEmptyBlockStore(const StackConfig& config,
                                                               const engine::Model& model) {
  store::BlockStoreParams params;
  params.space.model_fingerprint = model.fingerprint();
  params.space.block_size = static_cast<uint32_t>(config.block_size);
  params.ram_budget_bytes = 0;
  params.disk_budget_bytes = 0;
  params.eviction = config.eviction;
  return store::BlockStore::Open(params);
}

// --embedding-model: its own model and context, on the GPUs when the generation model is.
Result<std::unique_ptr<LlamaEmbedder>> OpenEmbedder(const StackConfig& config) {
  if (config.embedding_model.empty()) return std::unique_ptr<LlamaEmbedder>();
  KV_ASSIGN_OR_RETURN(std::unique_ptr<LlamaEmbedder> embedder,
                      LlamaEmbedder::Open({.path = config.embedding_model,
                                           .n_threads = config.threads,
                                           .n_gpu_layers = config.gpus > 0 ? -1 : 0}));
  const engine::EmbeddingModel& model = embedder->model();
  KV_LOG(kInfo) << "chunk search: BM25 + dense with " << model.name() << " (" << model.dim()
                << " dimensions, " << engine::EmbeddingPoolingName(model.pooling()) << " pooling)";
  return embedder;
}

Result<ManagerParams> ManagerParamsFor(const StackConfig& config, uint32_t n_stream,
                                       RestorePolicy restore, bool upstream) {
  ManagerParams params;
  KV_ASSIGN_OR_RETURN(params.recall_kv.mode, ParseRecallKvMode(config.recall_kv));
  params.recall_kv.blend_fraction = config.recall_kv_fraction;
  KV_ASSIGN_OR_RETURN(params.recall_kv.codec, ParseCodec(config.recall_kv_encoding));
  // The context's last sequences: imports of recalled history go through them (Build).
  if (!upstream && params.recall_kv.mode != RecallKvMode::kOff && config.kv_unified) {
    params.recall_scratch_seq = static_cast<llama_seq_id>(ContextSequences(config));
    params.recall_accumulators = RecallAccumulators(config);
  }
  params.window = std::min(config.window, CellsPerSequence(config));
  params.max_generation = config.max_generation;
  params.threads = config.conversation_threads;
  params.queue = config.conversation_queue;
  params.queue_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(config.queue_timeout_s * 1000));
  params.n_sequences = ContextSequences(config);
  // With sequences of their own, pins take only those: the threads keep all their parked
  // ones for unpinned traffic.
  params.max_pinned =
      config.pinned_sequences > 0 ? config.pinned_sequences : config.conversation_threads;
  params.n_stream = n_stream;
  params.cache_size = config.cache_size;
  params.restore = restore;
  params.share_cache_across_scopes = config.shared_cache;
  params.recall_budget = config.recall_budget;
  params.recall_min_score = config.recall_min_score;
  params.fog_alpha = config.fog_alpha;
  params.max_recalls = config.max_recalls;
  if (!config.hedge_phrases.empty()) params.hedge_phrases = config.hedge_phrases;
  return params;
}

}  // namespace

// One accumulator sequence per conversation generating at once (recall_kv.h), within
// llama.cpp's 256 sequences (the scratch one counted).
int RecallAccumulators(const StackConfig& config) {
  return std::max(0, std::min(config.conversation_threads, 255 - ContextSequences(config)));
}

// Every running conversation and as many parked ones keep their KV on the device, and each
// pinned one (beyond them) its own.
int ContextSequences(const StackConfig& config) {
  return 2 * config.conversation_threads + config.pinned_sequences;
}

Status ValidateStackConfig(const StackConfig& c) {
  if (c.window < 64) return InvalidArgumentError("--window must be at least 64");
  if (c.cache_size < c.window) return InvalidArgumentError("--cache-size must be >= --window");
  if (c.max_generation < 1) return InvalidArgumentError("--max-generation must be positive");
  if (c.conversation_threads < 1) {
    return InvalidArgumentError("--conversation-threads must be at least 1");
  }
  if (c.conversation_queue < 0) return InvalidArgumentError("--conversation-queue must be >= 0");
  if (!(c.queue_timeout_s >= 0.001))
    return InvalidArgumentError("--queue-timeout must be positive");
  if (c.pinned_sequences < 0) return InvalidArgumentError("--pinned-sequences must be >= 0");
  if (ContextSequences(c) > kMaxSequences) {
    return InvalidArgumentError("2 x --conversation-threads + --pinned-sequences is " +
                                std::to_string(ContextSequences(c)) + "; llama.cpp holds at most " +
                                std::to_string(kMaxSequences) + " sequences");
  }
  if (c.data_dir.empty()) return InvalidArgumentError("a data folder (--data-dir) is required");
  if (!c.upstream_url.empty()) {
    if (!(c.upstream_timeout_s >= 0.001)) {
      return InvalidArgumentError("--upstream-timeout must be positive");
    }
  }
  if (c.cache_disk_gb > 0 && c.cache_dir.empty()) {
    return InvalidArgumentError("a disk tier needs a folder (--cache-dir)");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Stack>> Stack::Build(const StackConfig& config) {
  KV_RETURN_IF_ERROR(ValidateStackConfig(config));
  KV_ASSIGN_OR_RETURN(engine::KvCacheType cache_type,
                      engine::ParseKvCacheType(config.kv_cache_dtype));
  KV_ASSIGN_OR_RETURN(RestorePolicy restore, ParseRestorePolicy(config.restore));
  std::unique_ptr<Stack> stack(new Stack);
  const bool upstream = !config.upstream_url.empty();
  engine::ModelLoadParams load;
  load.path = config.model_path;
  load.n_gpu_layers = config.gpus > 0 ? -1 : 0;
  load.n_gpus = config.gpus;
  if (upstream) {
    // The upstream runs the weights; kvault needs the vocabulary and the chat template.
    if (!config.tokenizer_path.empty()) load.path = config.tokenizer_path;
    load.vocab_only = true;
    load.n_gpu_layers = 0;
    Result<std::unique_ptr<engine::Model>> vocab = engine::Model::Load(load);
    if (!vocab.ok()) {
      return vocab.status().WithPrefix(
          "--upstream needs the upstream model's vocabulary: --tokenizer FILE.gguf (the GGUF "
          "the upstream serves, or any GGUF of that model)");
    }
    stack->model_ = std::move(vocab).value();
  } else {
    KV_ASSIGN_OR_RETURN(stack->model_, engine::Model::Load(load));
    const int n_sequences = ContextSequences(config);
    engine::ContextParams context_params;
    // More for recalled history's imports (recall_kv.h), in a unified cache only (in one of
    // a stream per sequence each would take a share of the cells and could not be used): a
    // scratch sequence holding one span at a time, and accumulators holding up to a recall
    // budget each; cells for them.
    const bool scratch = config.kv_unified && config.recall_kv != "off";
    const int accumulators = scratch ? RecallAccumulators(config) : 0;
    const int recall_cells = std::min(config.recall_budget, config.window / 4);
    context_params.n_ctx =
        static_cast<uint32_t>(CellsPerSequence(config) * n_sequences +
                              (scratch ? RecallKv::kSpanTokens + accumulators * recall_cells : 0));
    context_params.n_seq_max =
        static_cast<uint32_t>(n_sequences + (scratch ? 1 : 0) + accumulators);
    context_params.n_threads = config.threads;
    context_params.cache_type = cache_type;
    context_params.kv_unified = config.kv_unified;
    KV_ASSIGN_OR_RETURN(stack->context_, engine::Context::Create(*stack->model_, context_params));
  }
  if (!config.remote_url.empty()) {
    KV_ASSIGN_OR_RETURN(store::RedisUrl url, store::ParseRedisUrl(config.remote_url));
    stack->redis_ = std::make_shared<store::RedisClient>(store::RedisClient::Options{.url = url});
    // Said now, not at the first request: a wrong address shows in the start-up log.
    Result<store::RedisReply> ping = stack->redis_->Command({"PING"});
    KV_LOG(kInfo) << "remote: redis " << url.Redacted()
                  << (ping.ok() ? " answers"
                                : " does not answer yet (" + ping.status().message() +
                                      "); serving from the local tiers meanwhile");
  }
  if (upstream) {
    KV_ASSIGN_OR_RETURN(stack->block_store_, OpenEmptyBlockStore(config, *stack->model_));
  } else {
    KV_ASSIGN_OR_RETURN(stack->block_store_,
                        OpenBlockStore(config, *stack->context_, &stack->health_, stack->redis_));
  }
  KV_ASSIGN_OR_RETURN(stack->journal_, Journal::Open(config.data_dir + "/conversations"));
  if (stack->redis_ != nullptr) {
    const std::string replica =
        std::to_string(::getpid()) + "-" +
        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    stack->remote_journal_ = std::make_unique<RemoteJournal>(
        stack->redis_, config.remote_prefix, replica,
        std::chrono::milliseconds(config.remote_lease_ms), stack->journal_.get());
    stack->journal_->SetMirror(stack->remote_journal_.get());
  }
  KV_ASSIGN_OR_RETURN(stack->sessions_, SessionStore::Open(config.data_dir + "/sessions"));
  if (stack->redis_ != nullptr) {
    stack->remote_sessions_ = std::make_unique<RemoteSessions>(stack->redis_, config.remote_prefix);
    stack->sessions_->SetMirror(stack->remote_sessions_.get());
  }
  stack->index_tokenizer_ = std::make_unique<engine::Tokenizer>(*stack->model_);
  KV_ASSIGN_OR_RETURN(stack->embedder_, OpenEmbedder(config));
  memory::ChunkIndexOptions index_options;
  index_options.embedder = stack->embedder_.get();
  index_options.path = config.data_dir + "/index.db";
  index_options.detokenize = [tokenizer =
                                  stack->index_tokenizer_.get()](std::span<const int32_t> tokens) {
    return tokenizer->Detokenize(tokens, /*render_special=*/false);
  };
  KV_ASSIGN_OR_RETURN(stack->index_, memory::ChunkIndex::Open(std::move(index_options)));
  if (const Result<memory::ChunkIndexStats> index_stats = stack->index_->Stats(false);
      index_stats.ok() && index_stats->vectors_dropped > 0) {
    KV_LOG(kWarning) << "chunk index: " << index_stats->vectors_dropped
                     << " chunk embeddings made by another embedding model were dropped; their "
                        "chunks are found by BM25 only";
  }
  const std::string knowledge_path =
      config.knowledge_path.empty() ? config.data_dir + "/knowledge.db" : config.knowledge_path;
  KV_ASSIGN_OR_RETURN(stack->knowledge_, memory::KnowledgeStore::Open(knowledge_path));
  if (stack->redis_ != nullptr) {
    stack->remote_knowledge_ =
        std::make_unique<RemoteKnowledge>(stack->redis_, config.remote_prefix);
    stack->knowledge_->SetFeed(stack->remote_knowledge_.get());
  }
  if (upstream) {
    KV_ASSIGN_OR_RETURN(
        stack->upstream_,
        upstream::UpstreamClient::Create({.url = config.upstream_url,
                                          .api_key = config.upstream_key,
                                          .model = config.upstream_model,
                                          .timeout = std::chrono::milliseconds(static_cast<int64_t>(
                                              config.upstream_timeout_s * 1000))}));
    // Said now: a wrong address shows in the start-up log. Not fatal: the upstream may
    // start after kvault (/health says whether it answers).
    Result<std::vector<std::string>> models = stack->upstream_->Models();
    KV_LOG(kInfo) << "upstream: " << stack->upstream_->endpoint().ToString()
                  << (models.ok() ? " serves '" + stack->upstream_->model() + "'"
                                  : " does not answer yet (" + models.status().message() + ")");
  } else {
    KV_ASSIGN_OR_RETURN(stack->scheduler_,
                        engine::Scheduler::Start(stack->context_.get(), *stack->model_,
                                                 {.prefill_chunk = config.prefill_chunk}));
  }
  if (!config.normalize_rules_path.empty()) {
    KV_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config.normalize_rules_path));
    Result<Json> json = ParseJson(text);
    if (!json.ok()) {
      return InvalidArgumentError("--normalize-rules " + config.normalize_rules_path + ": " +
                                  json.status().message());
    }
    Result<std::vector<NormalizeRule>> rules = ParseNormalizeRules(*json);
    if (!rules.ok()) return rules.status().WithPrefix("--normalize-rules");
    // A rule's `model` is matched against the model that generates: the upstream's name
    // with --upstream, else the GGUF's.
    const std::string model_name = stack->upstream_ != nullptr && !stack->upstream_->model().empty()
                                       ? stack->upstream_->model()
                                       : stack->model_->info().name;
    Result<std::unique_ptr<TextNormalizer>> normalizer = TextNormalizer::Create(*rules, model_name);
    if (!normalizer.ok()) return normalizer.status().WithPrefix("--normalize-rules");
    stack->normalizer_ = std::move(normalizer).value();
    KV_LOG(kInfo) << "normalisation: " << stack->normalizer_->rules() << " of " << rules->size()
                  << " rules apply to '" << model_name << "'";
  }
  const uint32_t n_stream = stack->context_ != nullptr ? stack->context_->n_stream() : 1;
  KV_ASSIGN_OR_RETURN(ManagerParams manager_params,
                      ManagerParamsFor(config, n_stream, restore, upstream));
  stack->manager_ = std::make_unique<ConversationManager>(
      *stack->model_, stack->scheduler_.get(), manager_params,
      ManagerDeps{.store = upstream ? nullptr : stack->block_store_.get(),
                  .journal = stack->journal_.get(),
                  .sessions = stack->sessions_.get(),
                  .index = stack->index_.get(),
                  .knowledge = stack->knowledge_.get(),
                  .health = &stack->health_,
                  .remote = stack->remote_journal_.get(),
                  .upstream = stack->upstream_.get(),
                  .normalizer = stack->normalizer_.get()});
  return stack;
}

Stack::~Stack() {
  manager_.reset();
  scheduler_.reset();
  remote_journal_.reset();  // releases the leases still held
  block_store_.reset();     // finishes queued disk and remote writes
}

const engine::EmbeddingModel* Stack::embedding_model() const {
  return embedder_ ? &embedder_->model() : nullptr;
}

}  // namespace kvault::conversation
