#include "kvault/kv/block_hash.h"

#include <vector>

namespace kvault::kv {

BlockName ComputeBlockName(const BlockName& parent, const BlockNamespace& space,
                           std::span<const llama_token> tokens) {
  Hasher hasher;
  hasher.Update(std::string_view("kvault-block-v1"));
  hasher.UpdatePod(parent.low);
  hasher.UpdatePod(parent.high);
  hasher.UpdatePod(space.model_fingerprint.low);
  hasher.UpdatePod(space.model_fingerprint.high);
  hasher.UpdatePod(space.cache_type);
  hasher.UpdatePod(static_cast<uint8_t>(space.rotated));
  hasher.UpdatePod(static_cast<uint8_t>(space.v_trans));
  hasher.UpdatePod(static_cast<uint64_t>(tokens.size()));
  hasher.Update(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(tokens.data()),
                                         tokens.size_bytes()));
  return hasher.Digest128();
}

BlockName PartitionRoot(std::string_view name) {
  if (name.empty()) return {};
  // A zero digest would be the shared root: the low half is never 0.
  return {Hash64(name, Hash64(std::string_view("kvault-partition-v1"))) | 1, 0};
}

std::vector<BlockName> ComputeBlockNames(const BlockNamespace& space,
                                         std::span<const llama_token> tokens,
                                         const BlockName& root) {
  std::vector<BlockName> names;
  BlockName parent = root;
  for (size_t start = 0; start + space.block_size <= tokens.size(); start += space.block_size) {
    parent = ComputeBlockName(parent, space, tokens.subspan(start, space.block_size));
    names.push_back(parent);
  }
  return names;
}

}  // namespace kvault::kv
