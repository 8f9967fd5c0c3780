// server/server_config.h: everything `kvault serve` can be told (flags, KVAULT_* environment
// variables and the JSON config file all fill this struct; see cli/serve_options.cc).
//
// Thread-safety: a value type.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvault::server {

struct ServerConfig {
  std::string model_path = "models/default.gguf";
  std::string host = "127.0.0.1";
  int port = 8200;
  int window = 4096;              // tokens the model sees per inference
  int64_t cache_size = 10000000;  // tokens each conversation remembers
  int max_generation = 4096;      // most tokens one reply may have
  int max_model_len = 0;          // KV cells per sequence; 0 = window
  std::string kv_cache_dtype = "f16";
  // One KV cell pool for all sequences (shared prefixes held once) instead of one per
  // sequence (faster prefill when many sequences are parked; see engine/context.h).
  bool kv_unified = false;
  int threads = 0;  // CPU threads for llama.cpp; 0 = all cores
  int gpus = 0;     // > 0: offload all layers, split over this many GPUs
  int conversation_threads = 4;
  int conversation_queue = 64;
  double fog_alpha = 0.5;
  int recall_budget = 1024;                // tokens of recalled chunks per prompt; 0 = no recall
  double recall_min_score = 1.0;           // relevance threshold (BM25 or fused score, fog applied)
  int max_recalls = 2;                     // mid-generation recalls per response; 0 = off
  std::vector<std::string> hedge_phrases;  // empty = the built-in English list
  // GGUF embedding model for dense chunk search fused with BM25; "" = BM25 only.
  std::string embedding_model;
  std::vector<std::string> api_keys;
  std::string log_format = "text";
  std::string log_level = "info";
  int64_t max_body_bytes = 64ll << 20;
  int prefill_chunk = 512;
  // KV state engine (store/): tiers, budgets, encoding, eviction, restore policy.
  std::string cache_dir;  // "" = <XDG cache>/kvault/blocks
  std::string data_dir;   // "" = <XDG data>/kvault (conversation journals, sessions)
  int64_t cache_ram_mb = 2048;
  double cache_disk_gb = 20;  // 0 = no disk tier
  int block_size = 256;
  std::string cache_encoding = "f16";  // f16, q8, q4, each optionally "+zstd"
  std::string eviction = "cost";
  std::string restore = "auto";  // auto, always, never
  // A JSON file: an array of prompts (strings) or chat requests ({"messages": [...]}) whose
  // KV is computed at start-up and pinned (shared system prompts, RAG scaffolds).
  std::string preload_path;
  double shutdown_grace_seconds = 10;
};

}  // namespace kvault::server
