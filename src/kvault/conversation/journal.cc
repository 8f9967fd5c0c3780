#include "kvault/conversation/journal.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>

#include "kvault/base/coding.h"
#include "kvault/base/file.h"
#include "kvault/base/hash.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"
#include "kvault/conversation/conversation.h"
#include "kvault/store/record_log.h"

namespace kvault::conversation {
namespace {

constexpr uint8_t kHeader = 1;
constexpr uint8_t kUpdateV1 = 3;  // without the unanswered turn
constexpr uint8_t kUpdateV2 = 4;  // without the turns' times
constexpr uint8_t kUpdate = 5;
// Turn times are Unix seconds; beyond this a record is corrupt (year 2106, TokenStore's limit).
constexpr uint64_t kMaxTime = UINT32_MAX;
constexpr uint64_t kMaxText = 1ull << 32;

std::string Encode(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

std::string HeaderRecord(const std::string& scope, const std::string& id) {
  std::vector<uint8_t> bytes;
  VectorSink out(&bytes);
  PutFixed<uint8_t>(&out, kHeader);
  PutLengthPrefixed(&out, scope);
  PutLengthPrefixed(&out, id);
  return Encode(bytes);
}

void PutTurns(ByteSink* out, std::span<const JournalTurn> turns) {
  PutVarint64(out, turns.size());
  for (const JournalTurn& turn : turns) {
    PutLengthPrefixed(out, turn.role);
    PutLengthPrefixed(out, turn.content);
    PutVarint64(out, static_cast<uint64_t>(std::clamp<int64_t>(turn.time, 0, kMaxTime)));
    PutVarint64(out, turn.tokens.size());
    for (int32_t token : turn.tokens) PutVarint64(out, static_cast<uint32_t>(token));
  }
}

std::string UpdateRecord(size_t kept, std::span<const JournalTurn> added,
                         const JournalState& state) {
  std::vector<uint8_t> bytes;
  VectorSink out(&bytes);
  PutFixed<uint8_t>(&out, kUpdate);
  PutVarint64(&out, kept);
  PutTurns(&out, added);
  PutFixed(&out, state.tail.low);
  PutFixed(&out, state.tail.high);
  PutVarint64(&out, static_cast<uint64_t>(state.clear_first_turn + 1));
  PutVarint64(&out, static_cast<uint64_t>(state.unanswered_turn + 1));
  return Encode(bytes);
}

Status GetTurn(SpanSource* in, bool with_time, JournalTurn* turn) {
  KV_RETURN_IF_ERROR(GetLengthPrefixed(in, &turn->role, 64));
  KV_RETURN_IF_ERROR(GetLengthPrefixed(in, &turn->content, kMaxText));
  if (with_time) {
    uint64_t time = 0;
    KV_RETURN_IF_ERROR(GetVarint64(in, &time));
    if (time > kMaxTime) return CorruptionError("journal turn time out of range");
    turn->time = static_cast<int64_t>(time);
  }
  uint64_t n = 0;
  KV_RETURN_IF_ERROR(GetVarint64(in, &n));
  if (n > in->remaining()) return CorruptionError("journal turn claims too many tokens");
  turn->tokens.resize(n);
  for (int32_t& token : turn->tokens) {
    uint64_t value = 0;
    KV_RETURN_IF_ERROR(GetVarint64(in, &value));
    if (value > INT32_MAX) return CorruptionError("journal token id out of range");
    token = static_cast<int32_t>(value);
  }
  return Status::Ok();
}

Status GetTurns(SpanSource* in, bool with_times, std::vector<JournalTurn>* turns) {
  uint64_t n = 0;
  KV_RETURN_IF_ERROR(GetVarint64(in, &n));
  if (n > in->remaining()) return CorruptionError("journal record claims too many turns");
  for (uint64_t i = 0; i < n; ++i) {
    JournalTurn turn;
    KV_RETURN_IF_ERROR(GetTurn(in, with_times, &turn));
    turns->push_back(std::move(turn));
  }
  return Status::Ok();
}

Status GetTurnNumber(SpanSource* in, int64_t* number) {
  uint64_t value = 0;
  KV_RETURN_IF_ERROR(GetVarint64(in, &value));
  if (value > (uint64_t{1} << 48)) return CorruptionError("journal turn number out of range");
  *number = static_cast<int64_t>(value) - 1;
  return Status::Ok();
}

Status ApplyUpdate(const std::string& record, JournalEntry* entry) {
  SpanSource in(AsBytes(record));
  uint8_t type = 0;
  uint64_t kept = 0;
  KV_RETURN_IF_ERROR(GetFixed(&in, &type));
  if (type != kUpdate && type != kUpdateV2 && type != kUpdateV1) {
    return CorruptionError("unknown journal record type " + std::to_string(type));
  }
  KV_RETURN_IF_ERROR(GetVarint64(&in, &kept));
  if (kept > entry->turns.size()) {
    return CorruptionError("journal update keeps more turns than were recorded");
  }
  if (kept < entry->turns.size()) {  // a replaced history: its turns become a branch
    JournalBranch branch{BranchName(static_cast<int64_t>(entry->branches.size()) + 1),
                         static_cast<int64_t>(kept),
                         {std::make_move_iterator(entry->turns.begin() + kept),
                          std::make_move_iterator(entry->turns.end())}};
    entry->branches.push_back(std::move(branch));
    entry->turns.resize(kept);
  }
  KV_RETURN_IF_ERROR(GetTurns(&in, type == kUpdate, &entry->turns));
  KV_RETURN_IF_ERROR(GetFixed(&in, &entry->tail.low));
  KV_RETURN_IF_ERROR(GetFixed(&in, &entry->tail.high));
  KV_RETURN_IF_ERROR(GetTurnNumber(&in, &entry->clear_first_turn));
  entry->unanswered_turn = -1;
  if (type != kUpdateV1) KV_RETURN_IF_ERROR(GetTurnNumber(&in, &entry->unanswered_turn));
  return Status::Ok();
}

Result<JournalEntry> Replay(const std::vector<std::string>& records) {
  if (records.empty()) return CorruptionError("empty journal");
  JournalEntry entry;
  SpanSource in(AsBytes(records[0]));
  uint8_t type = 0;
  KV_RETURN_IF_ERROR(GetFixed(&in, &type));
  if (type != kHeader) return CorruptionError("journal does not start with its header");
  KV_RETURN_IF_ERROR(GetLengthPrefixed(&in, &entry.scope, 1024));
  KV_RETURN_IF_ERROR(GetLengthPrefixed(&in, &entry.id, 1 << 20));
  for (size_t i = 1; i < records.size(); ++i) {
    KV_RETURN_IF_ERROR(ApplyUpdate(records[i], &entry));
  }
  return entry;
}

}  // namespace

Result<std::unique_ptr<Journal>> Journal::Open(const std::string& dir) {
  KV_RETURN_IF_ERROR(CreateDirectories(dir));
  std::unique_ptr<Journal> journal(new Journal(dir));
  KV_RETURN_IF_ERROR(journal->Load());
  return journal;
}

Status Journal::Load() {
  std::error_code error;
  for (std::filesystem::directory_iterator it(dir_, error), end; !error && it != end;
       it.increment(error)) {
    const std::string path = it->path().string();
    if (!path.ends_with(".log")) continue;
    Result<store::RecordLog::Opened> opened = store::RecordLog::Open(path);
    Result<JournalEntry> entry =
        opened.ok() ? Replay(opened->records) : Result<JournalEntry>(opened.status());
    if (!entry.ok()) {
      KV_LOG(kWarning) << "journal: skipping " << path << ": " << entry.status().ToString();
      continue;
    }
    {
      MutexLock lock(&mu_);
      counts_[ConversationKey(entry->scope, entry->id)] = opened->records.size();
    }
    recovered_.push_back(std::move(entry).value());
  }
  if (error) return IOError("cannot list " + dir_ + ": " + error.message());
  return Status::Ok();
}

std::vector<JournalEntry> Journal::TakeRecovered() { return std::move(recovered_); }

std::string Journal::PathOf(const std::string& scope, const std::string& id) const {
  return dir_ + "/" + HashBytes128(AsBytes(ConversationKey(scope, id))).ToHex() + ".log";
}

std::string BranchName(int64_t n) { return "branch-" + std::to_string(n); }

Status Journal::Record(const std::string& scope, const std::string& id, size_t kept,
                       std::span<const JournalTurn> added, const JournalState& state) {
  const std::string path = PathOf(scope, id);
  std::unique_ptr<store::RecordLog> log;
  std::vector<std::string> records;
  if (PathExists(path)) {
    KV_ASSIGN_OR_RETURN(log, store::RecordLog::OpenForAppend(path));
  } else {
    KV_ASSIGN_OR_RETURN(store::RecordLog::Opened opened, store::RecordLog::Open(path));
    log = std::move(opened.log);
    records.push_back(HeaderRecord(scope, id));
    KV_RETURN_IF_ERROR(log->Append(records.back(), false));
  }
  records.push_back(UpdateRecord(kept, added, state));
  KV_RETURN_IF_ERROR(log->Append(records.back(), /*sync=*/true));
  const std::string key = ConversationKey(scope, id);
  size_t before = 0;
  {
    MutexLock lock(&mu_);
    size_t& count = counts_[key];
    if (records.size() == 2) count = 0;  // a new log
    before = count;
    count += records.size();
  }
  if (mirror_ != nullptr) {
    // Logged and counted by the mirror; the turn is durable here either way.
    mirror_->Append(scope, id, before, records).IgnoreError();
  }
  return Status::Ok();
}

Result<std::vector<std::string>> Journal::Records(const std::string& scope,
                                                  const std::string& id) const {
  const std::string path = PathOf(scope, id);
  if (!PathExists(path)) return NotFoundError("conversation '" + id + "' has no journal");
  KV_ASSIGN_OR_RETURN(store::RecordLog::Opened opened, store::RecordLog::Open(path));
  return std::move(opened.records);
}

size_t Journal::RecordCount(const std::string& scope, const std::string& id) const {
  MutexLock lock(&mu_);
  auto it = counts_.find(ConversationKey(scope, id));
  return it == counts_.end() ? 0 : it->second;
}

Result<JournalEntry> Journal::Adopt(const std::string& scope, const std::string& id,
                                    std::span<const std::string> records) {
  KV_ASSIGN_OR_RETURN(JournalEntry entry,
                      Replay(std::vector<std::string>(records.begin(), records.end())));
  if (entry.scope != scope || entry.id != id) {
    return CorruptionError("the records are of another conversation");
  }
  const std::string path = PathOf(scope, id);
  if (PathExists(path)) {
    const std::string kept = path + ".replaced-" +
                             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
    std::error_code error;
    std::filesystem::copy_file(path, kept, error);
    if (error) return IOError("cannot keep " + path + " as " + kept + ": " + error.message());
    KV_LOG(kInfo) << "journal: conversation '" << id << "' continues another replica's state ("
                  << records.size() << " records); this replica's older log is kept as " << kept;
  }
  KV_RETURN_IF_ERROR(store::RecordLog::Rewrite(path, records));
  MutexLock lock(&mu_);
  counts_[ConversationKey(scope, id)] = records.size();
  return entry;
}

Result<JournalEntry> Journal::Read(const std::string& scope, const std::string& id) const {
  const std::string path = PathOf(scope, id);
  if (!PathExists(path)) return NotFoundError("conversation '" + id + "' has no journal");
  KV_ASSIGN_OR_RETURN(store::RecordLog::Opened opened, store::RecordLog::Open(path));
  return Replay(opened.records);
}

Status Journal::Remove(const std::string& scope, const std::string& id) {
  {
    MutexLock lock(&mu_);
    counts_.erase(ConversationKey(scope, id));
  }
  return RemoveFile(PathOf(scope, id));
}

}  // namespace kvault::conversation
