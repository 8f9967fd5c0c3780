// libFuzzer target: the disk tier's block files read back (store/block_store.h), at start-up
// and on a restore. Each input's block files are written into a private folder (fixed per
// process, emptied after each input) where BlockStore::Open indexes them: store/disk_tier.cc
// lists and sizes them, store/block_recovery.cc reads their headers and rebuilds the chains
// of the radix tree, deleting unreadable files and orphans. Then every chain found in the
// input (a first block and the blocks under it) is looked up and fetched, as a restore does:
// the files are read again and decoded, their names, positions and shape checked.
//
// Input: a control byte, then the block files, split before each "KVB1" (the block magic; at
// most 8), each named after the block name in its header, as the disk tier names files.
// Control bit 2: rename each block (in input order) as the server names it, from its parent's
// new name, namespace and tokens, so that a block whose header was changed is still indexed
// (recovery drops a block whose name does not match). Bit 0: then rewrite each file's
// trailing XXH3-64 so the decode gets past the checksum (kv::DecodeBlock on bytes whose
// checksum is as it comes is snapshot_fuzz's). Bit 1: the store expects the K/V shape of the
// first file (when it decodes), so shapes are compared.
// Checks, beyond crashes, leaks and UB: no more blocks are recovered than files were written,
// and a fetch returns at most what its lookup found, all of it when it reports no error.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvault/base/check.h"
#include "kvault/base/hash.h"
#include "kvault/base/log.h"
#include "kvault/kv/block_hash.h"
#include "kvault/kv/snapshot_codec.h"
#include "kvault/store/block_store.h"
#include "kvault/store/tier.h"

namespace {

namespace kv = kvault::kv;
namespace store = kvault::store;

constexpr std::string_view kMagic = "KVB1";
constexpr size_t kMaxFiles = 8;
constexpr uint8_t kFixChecksums = 1;
constexpr uint8_t kCheckShape = 2;
constexpr uint8_t kRename = 4;
constexpr size_t kNameOffset = 8;  // block name, then parent name (docs/snapshot_format.md)
constexpr size_t kParentOffset = 24;

using Renames = std::unordered_map<kv::BlockName, kv::BlockName, kv::BlockNameHash>;

// A private folder's parent: tmpfs when there is one. On ext4 every file or folder made and
// deleted costs journaling (~0.1-0.3 ms), more than the code under test.
std::string TempRoot() { return ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; }

// The folder the store's disk tier lives in, and the tier that names files in it.
struct Folder {
  std::string dir = TempRoot() + "/kvault_disk_block_fuzz_" + std::to_string(::getpid());
  std::unique_ptr<store::DiskTier> naming;
  Folder() {
    kvault::SetLogLevel(kvault::LogLevel::kError);  // a line per dropped block otherwise
    auto opened = store::DiskTier::Open(dir);
    KV_CHECK(opened.ok(), "cannot create the fuzz folder");
    naming = std::move(opened).value();
  }
  ~Folder() { ::rmdir(dir.c_str()); }
};

// The input's block files: split before each magic (bytes before the first one are a file
// too, so inputs without any magic still reach the reader).
std::vector<std::vector<uint8_t>> SplitFiles(std::string_view text) {
  std::vector<std::vector<uint8_t>> files;
  size_t start = 0;
  while (files.size() + 1 < kMaxFiles) {
    const size_t next = text.find(kMagic, start + 1);
    if (next == std::string_view::npos) break;
    files.emplace_back(text.begin() + start, text.begin() + next);
    start = next;
  }
  files.emplace_back(text.begin() + start, text.end());
  return files;
}

kv::BlockName NameInHeader(const std::vector<uint8_t>& file) {
  kv::BlockName name{1, 1};  // too short to have one: any name, recovery drops it
  if (file.size() >= kParentOffset) {
    std::memcpy(&name.low, file.data() + kNameOffset, 8);
    std::memcpy(&name.high, file.data() + kNameOffset + 8, 8);
  }
  return name;
}

void PutName(const kv::BlockName& name, size_t offset, std::vector<uint8_t>* file) {
  std::memcpy(file->data() + offset, &name.low, 8);
  std::memcpy(file->data() + offset + 8, &name.high, 8);
}

// What the control byte asks of one file before it is written: its name made from its
// content (and its parent's new name), its checksum made right.
void Prepare(uint8_t control, Renames* renames, std::vector<uint8_t>* file) {
  if (control & kRename) {
    if (kvault::Result<kv::BlockMeta> meta = kv::PeekBlockMeta(*file); meta.ok()) {
      auto parent = renames->find(meta->parent);
      if (parent != renames->end()) meta->parent = parent->second;
      const kv::BlockName name = kv::ComputeBlockName(meta->parent, meta->space, meta->tokens);
      (*renames)[meta->name] = name;
      PutName(meta->parent, kParentOffset, file);
      PutName(name, kNameOffset, file);
    }
  }
  if ((control & kFixChecksums) && file->size() >= 8) {
    const uint64_t checksum =
        kvault::Hash64(std::span<const uint8_t>(*file).first(file->size() - 8));
    std::memcpy(file->data() + file->size() - 8, &checksum, 8);
  }
}

// A plain write: WriteFileAtomic's fsyncs would cap the fuzzer at a few thousand runs a
// second. No O_TRUNC: ext4 flushes a file truncated to 0 when it is closed.
bool WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool written =
      ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) &&
      ::ftruncate(fd, static_cast<off_t>(bytes.size())) == 0;
  return ::close(fd) == 0 && written;
}

// Looks up and fetches the chain from `first` down (each block's first child in the input).
void FetchChain(store::BlockStore& blocks, const kv::BlockMeta& first,
                const std::unordered_map<kv::BlockName, kv::BlockMeta, kv::BlockNameHash>& child) {
  std::vector<llama_token> tokens;
  const kv::BlockMeta* at = &first;
  for (size_t depth = 0; at != nullptr && depth < kMaxFiles; ++depth) {
    tokens.insert(tokens.end(), at->tokens.begin(), at->tokens.end());
    auto next = child.find(at->name);
    at = next == child.end() ? nullptr : &next->second;
  }
  const store::Lookup lookup = blocks.Find(tokens, first.parent);
  const store::Fetched fetched = blocks.Fetch(lookup);
  size_t n_tokens = 0;
  for (const kv::KvBlock& block : fetched.blocks) n_tokens += block.n_tokens;
  KV_CHECK(fetched.n_tokens == n_tokens, "fetched blocks disagree with the tokens reported");
  KV_CHECK(fetched.blocks.size() <= lookup.blocks.size(), "fetched more blocks than found");
  KV_CHECK(fetched.n_tokens <= lookup.n_tokens, "fetched more tokens than found");
  KV_CHECK(!fetched.error.ok() || fetched.n_tokens == lookup.n_tokens, "fetch fell short");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Folder folder;
  if (size == 0) return 0;
  const uint8_t control = data[0];
  std::vector<std::vector<uint8_t>> files =
      SplitFiles({reinterpret_cast<const char*>(data) + 1, size - 1});
  store::BlockStoreParams params;
  params.space.block_size = 16;
  params.disk_dir = folder.dir;
  std::vector<kv::BlockMeta> metas;
  std::vector<std::string> paths;
  Renames renames;
  for (std::vector<uint8_t>& file : files) {
    Prepare(control, &renames, &file);
    if (kvault::Result<kv::BlockMeta> meta = kv::PeekBlockMeta(file); meta.ok()) {
      if (metas.empty() && meta->space.block_size > 0) params.space = meta->space;
      metas.push_back(std::move(meta).value());
    }
    const std::string path = folder.naming->PathOf(NameInHeader(file));
    const std::string parent = path.substr(0, path.rfind('/'));
    ::mkdir(parent.c_str(), 0755);
    if (WriteFile(path, file)) paths.push_back(path);
  }
  if (control & kCheckShape) {
    if (kvault::Result<kv::DecodedBlock> first = kv::DecodeBlock(files[0]); first.ok()) {
      params.shape = first->block.shape;
    }
  }
  {
    kvault::Result<std::unique_ptr<store::BlockStore>> blocks = store::BlockStore::Open(params);
    KV_CHECK(blocks.ok(), "the store does not open on the fuzz folder");
    const store::BlockStoreStats stats = (*blocks)->stats();
    KV_CHECK(stats.recovered_blocks <= static_cast<int64_t>(paths.size()),
             "recovered more blocks than there are files");
    std::unordered_map<kv::BlockName, kv::BlockMeta, kv::BlockNameHash> child;
    for (const kv::BlockMeta& meta : metas) child.try_emplace(meta.parent, meta);
    for (const kv::BlockMeta& meta : metas) {
      if (kv::IsPartitionRoot(meta.parent)) FetchChain(**blocks, meta, child);
    }
  }
  for (const std::string& path : paths) {
    ::unlink(path.c_str());
    ::rmdir(path.substr(0, path.rfind('/')).c_str());
  }
  return 0;
}
