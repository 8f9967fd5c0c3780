#include "kvault/conversation/session_file.h"

#include <cstring>
#include <string>

#include "kvault/base/coding.h"
#include "kvault/base/hash.h"
#include "kvault/base/json.h"
#include "kvault/base/status_macros.h"
#include "kvault/kv/snapshot_codec.h"

namespace kvault::conversation {
namespace {

constexpr uint32_t kMagic = 0x4653564b;  // "KVSF" read as little-endian bytes
constexpr uint16_t kVersion = 1;
// Bounds that keep a hostile header from asking for absurd allocations; the body that
// carries the file (--max-body-mb) is the real limit.
constexpr uint64_t kMaxMetadataBytes = 256ull << 20;
constexpr uint32_t kMaxBlocks = 1u << 20;

Status Bad(const std::string& why) { return InvalidArgumentError("session file: " + why); }

// Every read of the file: a short read is a truncated file.
template <typename T>
Status Get(SpanSource* source, T* value, const char* what) {
  if (!GetFixed(source, value).ok()) return Bad(std::string("truncated (") + what + ")");
  return Status::Ok();
}

Result<std::span<const uint8_t>> GetSized(SpanSource* source, uint64_t max_bytes,
                                          const char* what) {
  uint64_t size = 0;
  KV_RETURN_IF_ERROR(Get(source, &size, what));
  if (size > max_bytes || size > source->remaining()) {
    return Bad(std::string("truncated (") + what + ")");
  }
  return source->ReadView(size);
}

// The metadata's block list checked against the blocks' own headers: the file's parts must
// agree before an importer trusts either.
Status CheckBlockList(const Json& metadata, const SessionFile& file) {
  const auto parents = metadata.find("parents");
  if (parents == metadata.end() || !parents->is_array() ||
      parents->size() != file.session.blocks.size() ||
      file.blocks.size() != file.session.blocks.size()) {
    return Bad("its block list does not match its blocks");
  }
  for (size_t i = 0; i < file.blocks.size(); ++i) {
    Result<kv::BlockMeta> meta = kv::PeekBlockMeta(*file.blocks[i]);
    if (!meta.ok()) return Bad("block " + std::to_string(i) + ": " + meta.status().message());
    const Json& parent = (*parents)[i];
    if (!(meta->name == file.session.blocks[i]) || !parent.is_string() ||
        parent.get<std::string>() != meta->parent.ToHex()) {
      return Bad("block " + std::to_string(i) + " is not the one its list names");
    }
  }
  return Status::Ok();
}

}  // namespace

SessionFile PackSessionFile(Session session, std::vector<store::BlockBytes> found) {
  if (found.size() < session.blocks.size()) {
    // Some blocks are gone (dropped KV, a lost file): the file carries the prefix it has.
    session.blocks.resize(found.size());
    session.kv_tokens = 0;
    for (const store::BlockBytes& block : found) {
      Result<kv::BlockMeta> meta = kv::PeekBlockMeta(*block);
      if (meta.ok()) session.kv_tokens += static_cast<int64_t>(meta->tokens.size());
    }
  }
  session.kv_bytes = 0;
  for (const store::BlockBytes& block : found) {
    session.kv_bytes += static_cast<int64_t>(block->size());
  }
  return {std::move(session), std::move(found)};
}

std::vector<uint8_t> EncodeSessionFile(const SessionFile& file) {
  Session session = file.session;
  session.scope.clear();
  Json metadata = SessionToJson(session);
  Json parents = Json::array();
  for (const store::BlockBytes& block : file.blocks) {
    Result<kv::BlockMeta> meta = kv::PeekBlockMeta(*block);
    parents.push_back(meta.ok() ? meta->parent.ToHex() : std::string());
  }
  metadata["parents"] = std::move(parents);
  const std::string text = DumpJson(metadata);

  std::vector<uint8_t> bytes;
  VectorSink sink(&bytes);
  PutFixed(&sink, kMagic);
  PutFixed(&sink, kVersion);
  PutFixed(&sink, uint16_t{0});
  PutFixed(&sink, static_cast<uint64_t>(text.size()));
  sink.Append(AsBytes(text));
  PutFixed(&sink, static_cast<uint32_t>(file.blocks.size()));
  for (const store::BlockBytes& block : file.blocks) {
    PutFixed(&sink, static_cast<uint64_t>(block->size()));
    sink.Append(*block);
  }
  PutFixed(&sink, Hash64(std::span<const uint8_t>(bytes)));
  return bytes;
}

Result<SessionFile> DecodeSessionFile(std::span<const uint8_t> bytes) {
  // The checksum first: a truncated or flipped file is refused before any of it is parsed.
  if (bytes.size() < 4 + 2 + 2 + 8 + 4 + 8) return Bad("truncated (too short)");
  const std::span<const uint8_t> body = bytes.first(bytes.size() - 8);
  uint64_t checksum = 0;
  std::memcpy(&checksum, bytes.data() + body.size(), sizeof(checksum));
  uint32_t magic = 0;
  std::memcpy(&magic, bytes.data(), sizeof(magic));
  if (magic != kMagic) return Bad("not a kvault session file (bad magic)");
  if (Hash64(body) != checksum) return Bad("checksum mismatch (truncated or damaged)");

  SpanSource source(body);
  uint16_t version = 0, flags = 0;
  KV_RETURN_IF_ERROR(Get(&source, &magic, "magic"));
  KV_RETURN_IF_ERROR(Get(&source, &version, "version"));
  KV_RETURN_IF_ERROR(Get(&source, &flags, "flags"));
  if (version != kVersion) return Bad("version " + std::to_string(version) + " is not known");
  KV_ASSIGN_OR_RETURN(std::span<const uint8_t> text,
                      GetSized(&source, kMaxMetadataBytes, "metadata"));
  Result<Json> metadata =
      ParseJson(std::string_view(reinterpret_cast<const char*>(text.data()), text.size()));
  if (!metadata.ok()) return Bad("metadata: " + metadata.status().message());
  Result<Session> session = SessionFromJson(*metadata);
  if (!session.ok()) return Bad("metadata: " + session.status().message());

  SessionFile file;
  file.session = std::move(session).value();
  uint32_t n_blocks = 0;
  KV_RETURN_IF_ERROR(Get(&source, &n_blocks, "block count"));
  if (n_blocks > kMaxBlocks) return Bad("too many blocks");
  for (uint32_t i = 0; i < n_blocks; ++i) {
    KV_ASSIGN_OR_RETURN(std::span<const uint8_t> block,
                        GetSized(&source, source.remaining(), "block"));
    file.blocks.push_back(std::make_shared<const std::vector<uint8_t>>(block.begin(), block.end()));
  }
  if (source.remaining() != 0) return Bad("bytes after its last block");
  KV_RETURN_IF_ERROR(CheckBlockList(*metadata, file));
  return file;
}

Result<std::vector<store::BlockBytes>> ReRootBlocks(std::span<const store::BlockBytes> blocks,
                                                    const kv::BlockName& root) {
  std::vector<store::BlockBytes> out(blocks.begin(), blocks.end());
  if (blocks.empty()) return out;
  KV_ASSIGN_OR_RETURN(kv::BlockMeta first, kv::PeekBlockMeta(*blocks.front()));
  if (first.parent == root) return out;
  // Block names chain from the partition root, so every block of the chain is renamed; the
  // KV itself does not depend on the partition.
  kv::BlockName parent = root;
  for (store::BlockBytes& block : out) {
    KV_ASSIGN_OR_RETURN(kv::DecodedBlock decoded, kv::DecodeBlock(*block));
    kv::BlockMeta meta = decoded.meta;
    meta.parent = parent;
    meta.name = kv::ComputeBlockName(parent, meta.space, meta.tokens);
    const kv::CodecOptions options{.encoding = meta.encoding, .zstd = meta.zstd};
    KV_ASSIGN_OR_RETURN(std::vector<uint8_t> encoded,
                        kv::EncodeBlock(decoded.block, meta, options));
    block = std::make_shared<const std::vector<uint8_t>>(std::move(encoded));
    parent = meta.name;
  }
  return out;
}

}  // namespace kvault::conversation
