#include "kvault/conversation/remote_sessions.h"

#include <utility>

#include "kvault/base/coding.h"
#include "kvault/base/hash.h"
#include "kvault/base/status_macros.h"

namespace kvault::conversation {

RemoteSessions::RemoteSessions(std::shared_ptr<store::RedisClient> client, std::string prefix)
    : client_(std::move(client)), prefix_(std::move(prefix)) {}

std::string RemoteSessions::KeyOf(const std::string& scope) const {
  // Hashed: a scope is an API key's digest, and key names stay one shape whatever it is.
  return prefix_ + ":sess:" + HashBytes128(AsBytes(scope)).ToHex();
}

Result<std::optional<std::string>> RemoteSessions::Get(const std::string& scope,
                                                       const std::string& name) {
  Result<store::RedisReply> reply = client_->Command({"HGET", KeyOf(scope), name});
  if (!reply.ok()) {
    errors_.fetch_add(1);
    return reply.status();
  }
  if (reply->type == store::RedisReply::Type::kNil) return std::optional<std::string>();
  return std::optional<std::string>(std::move(reply->str));
}

Status RemoteSessions::Put(const std::string& scope, const std::string& name,
                           const std::string& text) {
  Result<store::RedisReply> reply = client_->Command({"HSET", KeyOf(scope), name, text});
  if (!reply.ok()) {
    errors_.fetch_add(1);
    return reply.status();
  }
  writes_.fetch_add(1);
  return Status::Ok();
}

Result<std::map<std::string, std::string>> RemoteSessions::List(const std::string& scope) {
  Result<store::RedisReply> reply = client_->Command({"HGETALL", KeyOf(scope)});
  if (!reply.ok()) {
    errors_.fetch_add(1);
    return reply.status();
  }
  std::map<std::string, std::string> sessions;
  for (size_t i = 0; i + 1 < reply->elements.size(); i += 2) {
    sessions[reply->elements[i].str] = reply->elements[i + 1].str;
  }
  return sessions;
}

}  // namespace kvault::conversation
