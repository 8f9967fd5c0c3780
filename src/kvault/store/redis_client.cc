#include "kvault/store/redis_client.h"

#include <algorithm>
#include <charconv>

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"

namespace kvault::store {
namespace {

constexpr std::chrono::milliseconds kFirstBackoff{200};
constexpr std::chrono::milliseconds kMaxBackoff{5000};

timeval ToTimeval(std::chrono::milliseconds ms) {
  return {static_cast<time_t>(ms.count() / 1000),
          static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

bool ParseInt(std::string_view text, int* out) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return error == std::errc() && end == text.data() + text.size();
}

// hiredis' reply as ours; an error reply as a status.
Result<RedisReply> Convert(const redisReply* reply) {
  RedisReply out;
  switch (reply->type) {
    case REDIS_REPLY_ERROR:
      return UnavailableError("redis: " + std::string(reply->str, reply->len));
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(reply->str, reply->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = reply->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      for (size_t i = 0; i < reply->elements; ++i) {
        Result<RedisReply> element = Convert(reply->element[i]);
        // An error inside an array (EXEC, EVAL) fails the whole reply.
        if (!element.ok()) return element.status();
        out.elements.push_back(std::move(element).value());
      }
      break;
    default: out.type = RedisReply::Type::kNil; break;
  }
  return out;
}

struct ArgvView {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  explicit ArgvView(const std::vector<std::string>& args) {
    for (const std::string& arg : args) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
  }
};

}  // namespace

std::string RedisUrl::Redacted() const {
  std::string text = "redis://";
  if (!user.empty() || !password.empty()) text += (user.empty() ? "" : user) + ":***@";
  text += host + ":" + std::to_string(port);
  if (db != 0) text += "/" + std::to_string(db);
  return text;
}

Result<RedisUrl> ParseRedisUrl(std::string_view url) {
  const auto bad = [&](const std::string& why) {
    return InvalidArgumentError("--remote-url '" + std::string(url) + "': " + why +
                                " (expected redis://[user:password@]host:port[/db])");
  };
  constexpr std::string_view kScheme = "redis://";
  if (url.starts_with("rediss://")) return bad("TLS (rediss://) is not supported");
  if (!url.starts_with(kScheme)) return bad("not a redis:// URL");
  std::string_view rest = url.substr(kScheme.size());
  RedisUrl parsed;
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = credentials.find(':');
    if (colon == std::string_view::npos) {
      parsed.password = std::string(credentials);  // redis://password@host
    } else {
      parsed.user = std::string(credentials.substr(0, colon));
      parsed.password = std::string(credentials.substr(colon + 1));
    }
  }
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty() && (!ParseInt(db, &parsed.db) || parsed.db < 0)) return bad("bad db number");
  }
  if (rest.empty()) return bad("no host");
  if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    if (!ParseInt(rest.substr(colon + 1), &parsed.port) || parsed.port < 1 || parsed.port > 65535) {
      return bad("bad port");
    }
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return bad("no host");
  parsed.host = std::string(rest);
  return parsed;
}

struct RedisClient::Connection {
  redisContext* context = nullptr;
  bool busy = false;
  ~Connection() {
    if (context != nullptr) redisFree(context);
  }
};

RedisClient::RedisClient(Options options) : options_(std::move(options)) {
  MutexLock lock(&mu_);
  for (int i = 0; i < std::max(1, options_.connections); ++i) {
    connections_.push_back(std::make_unique<Connection>());
  }
  retry_at_ = std::chrono::steady_clock::now();
}

RedisClient::~RedisClient() = default;

Result<RedisClient::Connection*> RedisClient::Take() {
  Connection* chosen = nullptr;
  {
    MutexLock lock(&mu_);
    if (!up_ && std::chrono::steady_clock::now() < retry_at_) {
      errors_.fetch_add(1);
      return UnavailableError("redis " + options_.url.Redacted() + " is down: " + last_error_);
    }
    while (chosen == nullptr) {
      for (const std::unique_ptr<Connection>& connection : connections_) {
        if (!connection->busy) {
          chosen = connection.get();
          break;
        }
      }
      if (chosen == nullptr) available_.Wait(&mu_);
    }
    chosen->busy = true;
  }
  if (chosen->context != nullptr) return chosen;
  // Connecting happens outside the lock: a slow connect holds up only this caller.
  redisContext* context = redisConnectWithTimeout(options_.url.host.c_str(), options_.url.port,
                                                  ToTimeval(options_.connect_timeout));
  std::string error;
  if (context == nullptr || context->err != 0) {
    error = context == nullptr ? "cannot allocate a connection" : context->errstr;
  } else {
    const timeval timeout = ToTimeval(options_.command_timeout);
    redisSetTimeout(context, timeout);
    chosen->context = context;
    std::vector<std::vector<std::string>> setup;
    if (!options_.url.password.empty()) {
      setup.push_back(
          options_.url.user.empty()
              ? std::vector<std::string>{"AUTH", options_.url.password}
              : std::vector<std::string>{"AUTH", options_.url.user, options_.url.password});
    }
    if (options_.url.db != 0) setup.push_back({"SELECT", std::to_string(options_.url.db)});
    for (const std::vector<std::string>& command : setup) {
      ArgvView view(command);
      auto* reply = static_cast<redisReply*>(redisCommandArgv(
          context, static_cast<int>(view.argv.size()), view.argv.data(), view.lengths.data()));
      if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
        error = reply == nullptr ? context->errstr : std::string(reply->str, reply->len);
      }
      if (reply != nullptr) freeReplyObject(reply);
      if (!error.empty()) break;
    }
    if (error.empty()) {
      reconnects_.fetch_add(1);
      return chosen;
    }
    chosen->context = nullptr;
  }
  if (context != nullptr) redisFree(context);
  Give(chosen, /*healthy=*/true);  // nothing to drop: it never connected
  NoteFailure(error);
  errors_.fetch_add(1);
  return UnavailableError("redis " + options_.url.Redacted() + ": " + error);
}

void RedisClient::Give(Connection* connection, bool healthy) {
  if (!healthy && connection->context != nullptr) {
    redisFree(connection->context);  // a timed-out connection may deliver a stale reply
    connection->context = nullptr;
  }
  MutexLock lock(&mu_);
  connection->busy = false;
  available_.Signal();
}

void RedisClient::NoteFailure(const std::string& error) {
  MutexLock lock(&mu_);
  const auto now = std::chrono::steady_clock::now();
  if (up_ || !ever_failed_) {
    KV_LOG(kWarning) << "remote: redis " << options_.url.Redacted() << " unreachable (" << error
                     << "); serving from the local tiers, retrying with backoff";
    down_since_ = now;
    backoff_ = kFirstBackoff;
  } else {
    backoff_ = std::min(kMaxBackoff, backoff_ * 2);
  }
  up_ = false;
  ever_failed_ = true;
  last_error_ = error;
  retry_at_ = now + backoff_;
}

void RedisClient::NoteSuccess() {
  MutexLock lock(&mu_);
  if (up_) return;
  if (ever_failed_) {
    KV_LOG(kInfo) << "remote: redis " << options_.url.Redacted() << " is back";
  }
  up_ = true;
  backoff_ = std::chrono::milliseconds(0);
}

Result<RedisReply> RedisClient::Command(const std::vector<std::string>& argv) {
  KV_ASSIGN_OR_RETURN(std::vector<Result<RedisReply>> replies, Pipeline({argv}));
  return std::move(replies.front());
}

Result<std::vector<Result<RedisReply>>> RedisClient::Pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  KV_ASSIGN_OR_RETURN(Connection * connection, Take());
  redisContext* context = connection->context;
  commands_.fetch_add(static_cast<int64_t>(commands.size()));
  for (const std::vector<std::string>& command : commands) {
    ArgvView view(command);
    redisAppendCommandArgv(context, static_cast<int>(view.argv.size()), view.argv.data(),
                           view.lengths.data());
  }
  std::vector<Result<RedisReply>> replies;
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(context, &raw) != REDIS_OK || raw == nullptr) {
      const std::string error = context->errstr[0] != '\0' ? context->errstr : "no reply";
      Give(connection, /*healthy=*/false);
      NoteFailure(error);
      errors_.fetch_add(1);
      return UnavailableError("redis " + options_.url.Redacted() + ": " + error);
    }
    auto* reply = static_cast<redisReply*>(raw);
    Result<RedisReply> converted = Convert(reply);
    if (!converted.ok()) errors_.fetch_add(1);
    replies.push_back(std::move(converted));
    freeReplyObject(reply);
  }
  Give(connection, /*healthy=*/true);
  NoteSuccess();
  return replies;
}

RedisClientStats RedisClient::stats() const {
  MutexLock lock(&mu_);
  RedisClientStats stats;
  stats.up = up_;
  stats.commands = commands_.load();
  stats.errors = errors_.load();
  stats.reconnects = reconnects_.load();
  stats.last_error = last_error_;
  if (!up_ && ever_failed_) {
    stats.down_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - down_since_).count();
  }
  return stats;
}

}  // namespace kvault::store
