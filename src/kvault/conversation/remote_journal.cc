#include "kvault/conversation/remote_journal.h"

#include <utility>

#include "kvault/base/coding.h"
#include "kvault/base/hash.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/conversation.h"

namespace kvault::conversation {
namespace {

// KEYS: list, fence. ARGV: fence (0 = unfenced), records before, records...
// -2: a newer fence was issued (a stale writer); -1: the list is not the length the writer
// thinks; else the new length.
constexpr const char* kAppendScript = R"lua(
local fence = tonumber(ARGV[1])
if fence > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') > fence then return -2 end
local n = redis.call('LLEN', KEYS[1])
if n ~= tonumber(ARGV[2]) then return -1 end
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return n + #ARGV - 2
)lua";

// KEYS: list, fence. ARGV: fence, records...: the list replaced, unless a newer fence exists.
constexpr const char* kRewriteScript = R"lua(
local fence = tonumber(ARGV[1])
if fence > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') > fence then return -2 end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return #ARGV - 1
)lua";

// KEYS: lease, fence. ARGV: replica, ttl ms. The fence grows only when the lease is taken,
// so waiting replicas never make the holder's fence look stale. 0 if another holds it.
constexpr const char* kAcquireScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
return fence
)lua";

// KEYS: lease. ARGV: value, ttl ms. Renews (or, with ttl 0, releases) a lease still ours.
constexpr const char* kRenewScript = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
)lua";

}  // namespace

RemoteJournal::RemoteJournal(std::shared_ptr<store::RedisClient> client, std::string prefix,
                             std::string replica_id, std::chrono::milliseconds lease_ttl,
                             Journal* journal)
    : client_(std::move(client)),
      prefix_(std::move(prefix)),
      replica_id_(std::move(replica_id)),
      lease_ttl_(lease_ttl),
      journal_(journal) {
  renewer_ = std::thread([this] { RenewLoop(); });
}

RemoteJournal::~RemoteJournal() {
  std::map<std::string, int64_t> held;
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    wake_.SignalAll();
    held = held_;
  }
  renewer_.join();
  for (const auto& [key, fence] : held) Release(key, fence);
}

RemoteJournal::Lease& RemoteJournal::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    if (owner_ != nullptr) owner_->Release(key_, fence_);
    owner_ = std::exchange(other.owner_, nullptr);
    key_ = std::move(other.key_);
    fence_ = other.fence_;
  }
  return *this;
}

RemoteJournal::Lease::~Lease() {
  if (owner_ != nullptr) owner_->Release(key_, fence_);
}

std::string RemoteJournal::KeyHash(const std::string& scope, const std::string& id) const {
  return HashBytes128(AsBytes(ConversationKey(scope, id))).ToHex();
}

Result<RemoteJournal::Lease> RemoteJournal::Acquire(const std::string& scope, const std::string& id,
                                                    std::chrono::milliseconds wait) {
  const std::string hash = KeyHash(scope, id);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  bool waited = false;
  while (true) {
    Result<store::RedisReply> fence = client_->Command(
        {"EVAL", kAcquireScript, "2", prefix_ + ":lease:" + hash, prefix_ + ":fence:" + hash,
         replica_id_, std::to_string(lease_ttl_.count())});
    if (!fence.ok()) return Lease{};  // Redis down: the local journal alone
    if (fence->integer > 0) {
      Lease lease;
      lease.owner_ = this;
      lease.key_ = hash;
      lease.fence_ = fence->integer;
      MutexLock lock(&mu_);
      held_[hash] = fence->integer;
      return lease;
    }
    if (!waited) lease_waits_.fetch_add(1);
    waited = true;
    if (std::chrono::steady_clock::now() >= deadline) {
      lease_conflicts_.fetch_add(1);
      return FailedPreconditionError("conversation '" + id +
                                     "' has a turn running on another replica; retry")
          .WithDetail(ErrorDetail::kConversationBusy);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}

void RemoteJournal::Release(const std::string& key, int64_t fence) {
  {
    MutexLock lock(&mu_);
    auto it = held_.find(key);
    if (it != held_.end() && it->second == fence) held_.erase(it);
  }
  client_
      ->Command({"EVAL", kRenewScript, "1", prefix_ + ":lease:" + key,
                 replica_id_ + ":" + std::to_string(fence), "0"})
      .status()
      .IgnoreError();
}

void RemoteJournal::RenewLoop() {
  while (true) {
    std::map<std::string, int64_t> held;
    {
      MutexLock lock(&mu_);
      if (!stopping_) wake_.WaitFor(&mu_, lease_ttl_ / 3);
      if (stopping_) return;
      held = held_;
    }
    for (const auto& [key, fence] : held) {
      client_
          ->Command({"EVAL", kRenewScript, "1", prefix_ + ":lease:" + key,
                     replica_id_ + ":" + std::to_string(fence), std::to_string(lease_ttl_.count())})
          .status()
          .IgnoreError();
    }
  }
}

std::optional<std::vector<std::string>> RemoteJournal::NewerRecords(const std::string& scope,
                                                                    const std::string& id,
                                                                    size_t local_count) {
  const std::string hash = KeyHash(scope, id);
  const std::string list = prefix_ + ":conv:" + hash;
  Result<store::RedisReply> length = client_->Command({"LLEN", list});
  if (!length.ok()) return std::nullopt;
  const auto remote_count = static_cast<size_t>(length->integer);
  if (remote_count < local_count) {
    // Redis lost what it had (restarted empty) or missed writes while down: ours is newer.
    if (Rewrite(scope, id, hash).ok()) resyncs_.fetch_add(1);
    return std::nullopt;
  }
  if (remote_count == local_count) return std::nullopt;
  Result<store::RedisReply> records = client_->Command({"LRANGE", list, "0", "-1"});
  if (!records.ok()) return std::nullopt;
  std::vector<std::string> out;
  for (store::RedisReply& element : records->elements) out.push_back(std::move(element.str));
  return out;
}

Status RemoteJournal::Append(const std::string& scope, const std::string& id, size_t n_before,
                             std::span<const std::string> records) {
  const std::string hash = KeyHash(scope, id);
  const int64_t fence = FenceOf(hash);
  std::vector<std::string> command = {"EVAL",
                                      kAppendScript,
                                      "2",
                                      prefix_ + ":conv:" + hash,
                                      prefix_ + ":fence:" + hash,
                                      std::to_string(fence),
                                      std::to_string(n_before)};
  command.insert(command.end(), records.begin(), records.end());
  Result<store::RedisReply> reply = client_->Command(command);
  if (!reply.ok()) {
    append_errors_.fetch_add(1);
    return reply.status();  // the next turn's sync writes the list again
  }
  if (reply->integer == -2) {
    stale_refused_.fetch_add(1);
    KV_LOG(kWarning) << "remote: conversation '" << id << "': a newer lease was issued since "
                     << "this replica's (fence " << fence << "); its turn stays in the local "
                     << "journal only and the shared state is not overwritten";
    return FailedPreconditionError("stale fencing token");
  }
  if (reply->integer == -1) {
    // The list is not what this replica last wrote (lost, or written while it was away): as
    // the lease holder, its log is the truth.
    if (fence == 0) {
      append_errors_.fetch_add(1);
      return FailedPreconditionError("the shared journal differs and no lease is held");
    }
    KV_RETURN_IF_ERROR(Rewrite(scope, id, hash));
    resyncs_.fetch_add(1);
  }
  appends_.fetch_add(static_cast<int64_t>(records.size()));
  return Status::Ok();
}

Status RemoteJournal::Rewrite(const std::string& scope, const std::string& id,
                              const std::string& hash) {
  KV_ASSIGN_OR_RETURN(std::vector<std::string> records, journal_->Records(scope, id));
  const int64_t fence = FenceOf(hash);
  std::vector<std::string> command = {"EVAL",
                                      kRewriteScript,
                                      "2",
                                      prefix_ + ":conv:" + hash,
                                      prefix_ + ":fence:" + hash,
                                      std::to_string(fence)};
  command.insert(command.end(), records.begin(), records.end());
  KV_ASSIGN_OR_RETURN(store::RedisReply reply, client_->Command(command));
  if (reply.integer == -2) {
    stale_refused_.fetch_add(1);
    return FailedPreconditionError("stale fencing token");
  }
  return Status::Ok();
}

int64_t RemoteJournal::FenceOf(const std::string& hash) const {
  MutexLock lock(&mu_);
  auto it = held_.find(hash);
  return it == held_.end() ? 0 : it->second;
}

RemoteJournalStats RemoteJournal::stats() const {
  RemoteJournalStats stats;
  stats.appends = appends_.load();
  stats.append_errors = append_errors_.load();
  stats.stale_refused = stale_refused_.load();
  stats.resyncs = resyncs_.load();
  stats.adoptions = adoptions_.load();
  stats.lease_waits = lease_waits_.load();
  stats.lease_conflicts = lease_conflicts_.load();
  MutexLock lock(&mu_);
  stats.leases_held = static_cast<int64_t>(held_.size());
  return stats;
}

}  // namespace kvault::conversation
