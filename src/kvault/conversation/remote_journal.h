// conversation/remote_journal.h: what lets any replica continue any conversation, in a
// Redis shared by all of them (store/redis_client.h):
//
//   <prefix>:conv:<key hash>   a list of the conversation's journal records (journal.h), the
//                              same bytes as the local log's, appended as turns happen
//   <prefix>:lease:<key hash>  "<replica>:<fence>", SET NX PX: the one replica that may run
//                              the conversation's turns now; renewed while it holds it
//   <prefix>:fence:<key hash>  the fencing counter, INCRemented by every lease taken
//
// A replica that gets a request for a conversation takes its lease (waiting for another
// replica's turn to end, within the request's wait), then compares its own log with the
// list: a longer list is adopted (journal.h Adopt; the local log is kept beside it), a
// shorter one (Redis restarted empty, writes lost while it was down) is written again from
// the local log. Appends are a Lua script that refuses a writer whose fence is older than
// the newest one issued (a replica that paused past its lease cannot overwrite newer turns)
// and one whose idea of the list's length is wrong.
//
// Redis down: no lease is taken, turns run on the local journal alone, and the next turn
// after Redis is back writes the list again. Nothing here fails a request.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kvault/base/mutex.h"
#include "kvault/base/result.h"
#include "kvault/conversation/journal.h"
#include "kvault/store/redis_client.h"

namespace kvault::conversation {

struct RemoteJournalStats {
  int64_t appends = 0;          // records written to Redis
  int64_t append_errors = 0;    // writes that failed (Redis down or refused)
  int64_t stale_refused = 0;    // writes refused for an older fence
  int64_t resyncs = 0;          // lists written again from the local log
  int64_t adoptions = 0;        // conversations continued from another replica's state
  int64_t lease_waits = 0;      // leases that were held by another replica at first
  int64_t lease_conflicts = 0;  // requests refused (409): the lease stayed held
  int64_t leases_held = 0;
};

class RemoteJournal : public JournalMirror {
 public:
  RemoteJournal(std::shared_ptr<store::RedisClient> client, std::string prefix,
                std::string replica_id, std::chrono::milliseconds lease_ttl, Journal* journal);
  ~RemoteJournal() override;  // stops the renewer and releases the leases still held

  // A lease, released when it goes out of scope.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    bool held() const { return owner_ != nullptr; }
    int64_t fence() const { return fence_; }

   private:
    friend class RemoteJournal;
    RemoteJournal* owner_ = nullptr;
    std::string key_;
    int64_t fence_ = 0;
  };

  // Takes the conversation's lease, waiting up to `wait` while another replica holds it:
  // FailedPrecondition (409) after that. Redis unreachable: an unheld Lease (no error).
  Result<Lease> Acquire(const std::string& scope, const std::string& id,
                        std::chrono::milliseconds wait);
  // Under the lease: the remote records when Redis holds more of the conversation than the
  // local log (`local_count` records), else nullopt; a shorter list is rewritten from the
  // local log on the way.
  std::optional<std::vector<std::string>> NewerRecords(const std::string& scope,
                                                       const std::string& id, size_t local_count);
  void NoteAdopted() { adoptions_.fetch_add(1); }

  Status Append(const std::string& scope, const std::string& id, size_t n_before,
                std::span<const std::string> records) override;

  RemoteJournalStats stats() const;
  store::RedisClient& client() { return *client_; }

 private:
  std::string KeyHash(const std::string& scope, const std::string& id) const;
  void Release(const std::string& key, int64_t fence);
  // The fence of the lease this replica holds on `hash`; 0 (unfenced) if none.
  int64_t FenceOf(const std::string& hash) const;
  // The list again from the local log (the lease holder's truth).
  Status Rewrite(const std::string& scope, const std::string& id, const std::string& hash);
  void RenewLoop();

  std::shared_ptr<store::RedisClient> client_;
  const std::string prefix_;
  const std::string replica_id_;
  const std::chrono::milliseconds lease_ttl_;
  Journal* const journal_;
  mutable Mutex mu_;
  std::map<std::string, int64_t> held_ KV_GUARDED_BY(mu_);  // key hash -> fence
  bool stopping_ KV_GUARDED_BY(mu_) = false;
  CondVar wake_;
  std::thread renewer_;
  std::atomic<int64_t> appends_{0}, append_errors_{0}, stale_refused_{0}, resyncs_{0},
      adoptions_{0}, lease_waits_{0}, lease_conflicts_{0};
};

}  // namespace kvault::conversation
