#include "kvault/store/block_files.h"

#include <filesystem>
#include <system_error>

#include "kvault/base/file.h"
#include "kvault/base/status_macros.h"
#include "kvault/kv/context_blocks.h"
#include "kvault/kv/snapshot_codec.h"

namespace kvault::store {
namespace {

// The disk tier's layout (disk_tier.cc's PathOf).
std::string BlockPath(const std::string& folder, const BlockName& name) {
  const std::string hex = name.ToHex();
  return folder + "/" + hex.substr(0, 2) + "/" + hex + ".kvb";
}

std::vector<std::string> NamespaceFolders(const std::string& cache_dir) {
  std::vector<std::string> folders;
  std::error_code error;
  for (std::filesystem::directory_iterator it(cache_dir, error), end; !error && it != end;
       it.increment(error)) {
    if (it->is_directory(error)) folders.push_back(it->path().string());
  }
  return folders;
}

}  // namespace

std::vector<BlockBytes> ReadBlockFiles(const std::string& cache_dir,
                                       std::span<const BlockName> names) {
  std::vector<BlockBytes> found;
  if (names.empty()) return found;
  // Blocks of one chain share a namespace, so one folder holds them all.
  for (const std::string& folder : NamespaceFolders(cache_dir)) {
    if (!PathExists(BlockPath(folder, names.front()))) continue;
    for (const BlockName& name : names) {
      Result<std::vector<uint8_t>> bytes = ReadFileToBytes(BlockPath(folder, name));
      if (!bytes.ok()) break;
      found.push_back(std::make_shared<const std::vector<uint8_t>>(std::move(bytes).value()));
    }
    break;
  }
  return found;
}

Status WriteBlockFiles(const std::string& cache_dir, std::span<const BlockBytes> blocks) {
  // Validate, then commit.
  std::vector<std::string> paths;
  for (const BlockBytes& block : blocks) {
    KV_ASSIGN_OR_RETURN(kv::DecodedBlock decoded, kv::DecodeBlock(*block));
    const std::string folder = cache_dir + "/" + kv::BlockNamespaceDigest(decoded.meta.space);
    paths.push_back(BlockPath(folder, decoded.meta.name));
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (PathExists(paths[i])) continue;
    KV_RETURN_IF_ERROR(CreateDirectories(std::filesystem::path(paths[i]).parent_path().string()));
    KV_RETURN_IF_ERROR(WriteFileAtomic(paths[i], std::span<const uint8_t>(*blocks[i])));
  }
  return Status::Ok();
}

}  // namespace kvault::store
