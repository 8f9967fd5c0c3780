// server/server_config.h: everything `kvault serve` can be told (flags, KVAULT_* environment
// variables and the JSON config file all fill this struct; see cli/serve_options.cc): the
// stack's settings (conversation/stack.h), and the HTTP server's own.
//
// Thread-safety: a value type.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvault/conversation/stack.h"

namespace kvault::server {

struct ServerConfig : conversation::StackConfig {
  std::string host = "127.0.0.1";
  int port = 8200;
  std::vector<std::string> api_keys;
  std::string log_format = "text";
  std::string log_level = "info";
  int64_t max_body_bytes = 64ll << 20;
  // Connections with a thread of their own (idle keep-alive and slow clients included), on
  // top of those the conversation threads and queue need.
  int max_connections = 1024;
  // A request head must arrive within this of its first byte, a body within this of its
  // head's end; else 408 (server/http_front.h).
  double header_timeout_seconds = 10;
  double body_timeout_seconds = 60;
  // A JSON file: an array of prompts (strings) or chat requests ({"messages": [...]}) whose
  // KV is computed at start-up and pinned (shared system prompts, RAG scaffolds).
  std::string preload_path;
  double shutdown_grace_seconds = 10;
  // Every answered generation as a row of <data_dir>/analytics.db (GET /v1/analytics).
  bool analytics = true;
  double analytics_retention_days = 30;
  int64_t analytics_max_rows = 1000000;
  // Device KV sized by memory (--kv-cache-memory, --gpu-memory-utilization): the budget and
  // the model's KV bytes per token it was divided by; 0 = sized by --window and threads.
  int64_t kv_budget_bytes = 0;
  int64_t kv_bytes_per_token = 0;
};

}  // namespace kvault::server
