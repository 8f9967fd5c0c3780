// The disk tier: one crash-safe file per block.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <system_error>
#include <unordered_map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvault/base/file.h"
#include "kvault/base/log.h"
#include "kvault/base/mutex.h"
#include "kvault/base/status_macros.h"
#include "kvault/kv/radix_tree.h"
#include "kvault/store/tier.h"

namespace kvault::store {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSuffix = ".kvb";

std::optional<uint64_t> ParseHex64(std::string_view hex) {
  if (hex.size() != 16) return std::nullopt;
  uint64_t value = 0;
  for (char c : hex) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      value |= static_cast<uint64_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
  }
  return value;
}

// "<32 hex digits>.kvb" -> the name (ToHex writes the high word first).
std::optional<BlockName> ParseFileName(std::string_view file) {
  if (file.size() != 32 + kSuffix.size() || !file.ends_with(kSuffix)) return std::nullopt;
  std::optional<uint64_t> high = ParseHex64(file.substr(0, 16));
  std::optional<uint64_t> low = ParseHex64(file.substr(16, 16));
  if (!high || !low) return std::nullopt;
  return BlockName{*low, *high};
}

class DiskTierImpl final : public DiskTier {
 public:
  explicit DiskTierImpl(std::string dir) : dir_(std::move(dir)) {}

  Status Scan() {
    std::error_code error;
    for (fs::recursive_directory_iterator it(dir_, error), end; !error && it != end;
         it.increment(error)) {
      if (!it->is_regular_file(error)) continue;
      const std::string file = it->path().filename().string();
      if (file.find(".tmp.") != std::string::npos) {
        // A write that crashed before its rename: never visible, safe to drop.
        RemoveFile(it->path().string()).IgnoreError();
        continue;
      }
      std::optional<BlockName> name = ParseFileName(file);
      if (!name) continue;
      const uint64_t size = it->file_size(error);
      if (error) break;
      MutexLock lock(&mu_);
      sizes_[*name] = size;
      used_bytes_ += size;
    }
    if (error) return IOError("cannot list " + dir_ + ": " + error.message());
    return Status::Ok();
  }

  std::string_view name() const override { return "disk"; }

  Status Put(const BlockName& name, const BlockBytes& bytes) override {
    const std::string path = PathOf(name);
    KV_RETURN_IF_ERROR(CreateDirectories(fs::path(path).parent_path().string()));
    KV_RETURN_IF_ERROR(WriteFileAtomic(path, std::span<const uint8_t>(*bytes)));
    MutexLock lock(&mu_);
    auto [it, inserted] = sizes_.try_emplace(name, bytes->size());
    if (!inserted) used_bytes_ -= it->second;
    it->second = bytes->size();
    used_bytes_ += bytes->size();
    return Status::Ok();
  }

  Result<BlockBytes> Get(const BlockName& name) override {
    if (!Contains(name)) return NotFoundError("block " + name.ToHex() + " is not on disk");
    KV_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileToBytes(PathOf(name)));
    return std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  }

  Status Erase(const BlockName& name) override {
    {
      MutexLock lock(&mu_);
      auto it = sizes_.find(name);
      if (it == sizes_.end()) return Status::Ok();
      used_bytes_ -= it->second;
      sizes_.erase(it);
    }
    Status removed = RemoveFile(PathOf(name));
    return removed.code() == StatusCode::kNotFound ? Status::Ok() : removed;
  }

  bool Contains(const BlockName& name) const override {
    MutexLock lock(&mu_);
    return sizes_.count(name) > 0;
  }

  uint64_t used_bytes() const override {
    MutexLock lock(&mu_);
    return used_bytes_;
  }

  uint64_t n_blocks() const override {
    MutexLock lock(&mu_);
    return sizes_.size();
  }

  std::vector<DiskBlockFile> Recovered() const override {
    MutexLock lock(&mu_);
    std::vector<DiskBlockFile> files;
    files.reserve(sizes_.size());
    for (const auto& [name, size] : sizes_) files.push_back({name, size});
    return files;
  }

  Result<std::vector<uint8_t>> ReadPrefix(const BlockName& name, size_t max_bytes) override {
    const std::string path = PathOf(name);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("open " + path, errno);
    // A buffer no bigger than the file: recovery reads every block's header this way, and a
    // small file (a short tail block, a small model) then costs its size, not max_bytes zeroed.
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size >= 0) {
      max_bytes = std::min(max_bytes, static_cast<size_t>(st.st_size));
    }
    std::vector<uint8_t> bytes(max_bytes);
    size_t n = 0;
    while (n < max_bytes) {
      const ssize_t got = ::read(fd, bytes.data() + n, max_bytes - n);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      n += static_cast<size_t>(got);
    }
    ::close(fd);
    bytes.resize(n);
    return bytes;
  }

  std::string PathOf(const BlockName& name) const override {
    const std::string hex = name.ToHex();
    return dir_ + "/" + hex.substr(0, 2) + "/" + hex + std::string(kSuffix);
  }

  Result<uint64_t> FreeBytes() const override { return FreeDiskBytes(dir_); }

 private:
  const std::string dir_;
  mutable Mutex mu_;
  std::unordered_map<BlockName, uint64_t, kv::BlockNameHash> sizes_ KV_GUARDED_BY(mu_);
  uint64_t used_bytes_ KV_GUARDED_BY(mu_) = 0;
};

}  // namespace

Result<std::unique_ptr<DiskTier>> DiskTier::Open(const std::string& dir) {
  KV_RETURN_IF_ERROR(CreateDirectories(dir));
  auto tier = std::make_unique<DiskTierImpl>(dir);
  KV_RETURN_IF_ERROR(tier->Scan());
  return std::unique_ptr<DiskTier>(std::move(tier));
}

}  // namespace kvault::store
