// libFuzzer target: conversation journal replay (conversation/journal.h), which restores every
// conversation's turns, branches and KV tail at start-up. The input is split at each "#REC"
// into records (at most 32; the rest stays in the last), which store::RecordLog appends to
// one conversation's log, checksums right, in a private folder (fixed per process); then
// Journal::Open reads the folder back, so the header and update-record decoders get the
// records themselves, not a torn log (record_log_fuzz's). Checks, beyond crashes, leaks and
// UB: at most the one conversation comes back, its branches named in order, its turn numbers
// in range.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "kvault/base/check.h"
#include "kvault/base/file.h"
#include "kvault/base/log.h"
#include "kvault/conversation/journal.h"
#include "kvault/store/record_log.h"

namespace {

namespace conversation = kvault::conversation;

constexpr std::string_view kSeparator = "#REC";
constexpr size_t kMaxRecords = 32;

// A private folder's parent: tmpfs when there is one. On ext4 every file or folder made and
// deleted costs journaling (~0.1-0.3 ms), more than the code under test.
std::string TempRoot() { return ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; }

// The journal folder and its one log, which keeps the record log's magic: each input cuts it
// back to that and appends its records. (A log made afresh each time would cost a flush on
// ext4, which writes out a file truncated to 0 when it is closed: ~400 us a run.)
struct Folder {
  std::string dir = TempRoot() + "/kvault_journal_fuzz_" + std::to_string(::getpid());
  std::string log = dir + "/fuzz.log";
  uint64_t empty_log_bytes = 0;
  Folder() {
    kvault::SetLogLevel(kvault::LogLevel::kError);  // a line per unreadable log otherwise
    KV_CHECK(kvault::CreateDirectories(dir).ok(), "cannot create the fuzz folder");
    ::unlink(log.c_str());
    kvault::Result<kvault::store::RecordLog::Opened> opened = kvault::store::RecordLog::Open(log);
    KV_CHECK(opened.ok(), "cannot create the fuzz log");
    empty_log_bytes = opened->log->size_bytes();
  }
  ~Folder() {
    ::unlink(log.c_str());
    ::rmdir(dir.c_str());
  }
};

std::vector<std::string_view> SplitRecords(std::string_view text) {
  std::vector<std::string_view> records;
  while (records.size() + 1 < kMaxRecords) {
    const size_t at = text.find(kSeparator);
    if (at == std::string_view::npos) break;
    records.push_back(text.substr(0, at));
    text.remove_prefix(at + kSeparator.size());
  }
  records.push_back(text);
  return records;
}

void CheckReplayed(const conversation::JournalEntry& entry) {
  const auto turn_number_ok = [&](int64_t turn) { return turn >= -1 && turn < (int64_t{1} << 48); };
  KV_CHECK(turn_number_ok(entry.clear_first_turn), "clear zone turn out of range");
  KV_CHECK(turn_number_ok(entry.unanswered_turn), "unanswered turn out of range");
  for (size_t i = 0; i < entry.branches.size(); ++i) {
    const conversation::JournalBranch& branch = entry.branches[i];
    KV_CHECK(branch.name == conversation::BranchName(static_cast<int64_t>(i) + 1),
             "branches out of order");
    KV_CHECK(branch.from_turn >= 0 && !branch.turns.empty(), "an impossible branch");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Folder folder;
  {
    KV_CHECK(::truncate(folder.log.c_str(), static_cast<off_t>(folder.empty_log_bytes)) == 0,
             "cannot empty the fuzz log");
    kvault::Result<std::unique_ptr<kvault::store::RecordLog>> log =
        kvault::store::RecordLog::OpenForAppend(folder.log);
    KV_CHECK(log.ok(), "cannot open the fuzz log");
    for (std::string_view record : SplitRecords({reinterpret_cast<const char*>(data), size})) {
      KV_CHECK((*log)->Append(record, /*sync=*/false).ok(), "cannot write the fuzz log");
    }
  }
  kvault::Result<std::unique_ptr<conversation::Journal>> journal =
      conversation::Journal::Open(folder.dir);
  KV_CHECK(journal.ok(), "cannot open the fuzz folder as a journal");
  const std::vector<conversation::JournalEntry> entries = (*journal)->TakeRecovered();
  KV_CHECK(entries.size() <= 1, "more conversations than logs");
  for (const conversation::JournalEntry& entry : entries) CheckReplayed(entry);
  return 0;
}
