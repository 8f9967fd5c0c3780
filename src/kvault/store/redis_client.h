// store/redis_client.h: a small, fault-tolerant client of one Redis (or Valkey) server over
// hiredis, for the remote tier (store/remote_tier.h) and the shared conversation state
// (conversation/remote_journal.h).
//
// Faults never hang a request: every command has a timeout, and a connection that fails
// marks the server down for a backoff (0.2 s doubling to 5 s); while down, commands fail at
// once with Unavailable, without touching the network. The first failure and the recovery
// are logged once each; both are counted.
//
// Thread-safety: all methods may be called from any thread. A few connections are kept, each
// used by one caller at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"

struct redisContext;

namespace kvault::store {

// redis://[user:password@]host:port[/db] (also rediss:// is refused: no TLS in this build).
struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user;
  std::string password;
  int db = 0;
  // The URL with the password hidden, for logs and /health.
  std::string Redacted() const;
};
Result<RedisUrl> ParseRedisUrl(std::string_view url);

struct RedisReply {
  enum class Type { kNil, kString, kInteger, kArray, kStatus };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus
  int64_t integer = 0;
  std::vector<RedisReply> elements;
};

struct RedisClientStats {
  bool up = false;          // the last command reached the server
  int64_t commands = 0;     // commands sent (a pipeline counts each)
  int64_t errors = 0;       // commands that failed: down, timeout, server error
  int64_t reconnects = 0;   // connections made after a failure
  double down_seconds = 0;  // how long it has been down (0 while up)
  std::string last_error;
};

class RedisClient {
 public:
  struct Options {
    RedisUrl url;
    std::chrono::milliseconds connect_timeout{300};
    std::chrono::milliseconds command_timeout{1000};
    int connections = 4;
  };
  // Connects lazily: a server that is not there yet is not an error.
  explicit RedisClient(Options options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // One command. A Redis error reply is an Unavailable status with its text (the server
  // answered, so the connection stays up); network faults are Unavailable too.
  Result<RedisReply> Command(const std::vector<std::string>& argv);
  // Several commands sent at once on one connection, their replies in order; fails as a
  // whole on a network fault, while a command's own error reply becomes an error in its slot.
  Result<std::vector<Result<RedisReply>>> Pipeline(
      const std::vector<std::vector<std::string>>& commands);

  const RedisUrl& url() const { return options_.url; }
  RedisClientStats stats() const;

 private:
  struct Connection;
  // A connected, idle connection (connecting one if needed); Unavailable while backing off.
  Result<Connection*> Take();
  void Give(Connection* connection, bool healthy);
  void NoteFailure(const std::string& error);
  void NoteSuccess();

  const Options options_;
  mutable Mutex mu_;
  std::vector<std::unique_ptr<Connection>> connections_ KV_GUARDED_BY(mu_);
  CondVar available_;
  std::chrono::steady_clock::time_point retry_at_ KV_GUARDED_BY(mu_);
  std::chrono::milliseconds backoff_ KV_GUARDED_BY(mu_){0};
  bool up_ KV_GUARDED_BY(mu_) = false;
  bool ever_failed_ KV_GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point down_since_ KV_GUARDED_BY(mu_);
  std::string last_error_ KV_GUARDED_BY(mu_);
  std::atomic<int64_t> commands_{0};
  std::atomic<int64_t> errors_{0};
  std::atomic<int64_t> reconnects_{0};
};

}  // namespace kvault::store
