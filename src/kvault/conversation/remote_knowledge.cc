#include "kvault/conversation/remote_knowledge.h"

#include <chrono>
#include <random>
#include <utility>
#include <vector>

#include "kvault/base/coding.h"
#include "kvault/base/hash.h"
#include "kvault/base/status_macros.h"

namespace kvault::conversation {
namespace {

// KEYS: the list. ARGV: a new epoch, records...: the epoch goes first into an empty list, so
// one exists before any record, however many replicas publish at once.
constexpr const char* kPublishScript = R"lua(
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('RPUSH', KEYS[1], ARGV[1]) end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return redis.call('LLEN', KEYS[1])
)lua";

// KEYS: the list. ARGV: first, last position: {epoch, records...}; {} while empty.
constexpr const char* kReadScript = R"lua(
local epoch = redis.call('LINDEX', KEYS[1], 0)
if not epoch then return {} end
local records = redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])
table.insert(records, 1, epoch)
return records
)lua";

std::string NewEpoch() {
  std::random_device random;
  const uint64_t bits =
      (static_cast<uint64_t>(random()) << 32) ^ random() ^
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  return "epoch:" + HashBytes128(AsBytes(std::to_string(bits))).ToHex();
}

}  // namespace

RemoteKnowledge::RemoteKnowledge(std::shared_ptr<store::RedisClient> client, std::string prefix)
    : client_(std::move(client)), key_(std::move(prefix) + ":knowledge") {}

Status RemoteKnowledge::Publish(std::span<const std::string> records) {
  std::vector<std::string> argv = {"EVAL", kPublishScript, "1", key_, NewEpoch()};
  argv.insert(argv.end(), records.begin(), records.end());
  Result<store::RedisReply> reply = client_->Command(argv);
  if (!reply.ok()) {
    errors_.fetch_add(1);
    return reply.status();
  }
  published_.fetch_add(static_cast<int64_t>(records.size()));
  return Status::Ok();
}

Result<memory::KnowledgeFeed::Batch> RemoteKnowledge::Read(int64_t from, int64_t limit) {
  if (limit <= 0) limit = 0;  // the epoch and length only
  Result<store::RedisReply> reply =
      client_->Command({"EVAL", kReadScript, "1", key_, std::to_string(from),
                        limit == 0 ? std::to_string(from - 1) : std::to_string(from + limit - 1)});
  if (!reply.ok()) {
    errors_.fetch_add(1);
    return reply.status();
  }
  Batch batch;
  if (reply->elements.empty()) return batch;
  batch.epoch = std::move(reply->elements[0].str);
  for (size_t i = 1; i < reply->elements.size(); ++i) {
    batch.records.push_back(std::move(reply->elements[i].str));
  }
  return batch;
}

}  // namespace kvault::conversation
