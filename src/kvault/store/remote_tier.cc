#include "kvault/store/remote_tier.h"

#include <utility>

#include "kvault/base/status_macros.h"

namespace kvault::store {

RemoteTier::RemoteTier(std::shared_ptr<RedisClient> client, std::string prefix, int64_t ttl_seconds)
    : client_(std::move(client)), prefix_(std::move(prefix)), ttl_seconds_(ttl_seconds) {}

std::string RemoteTier::KeyOf(const BlockName& name) const {
  return prefix_ + ":blk:" + name.ToHex();
}

Status RemoteTier::Put(const BlockName& name, const BlockBytes& bytes) {
  std::vector<std::string> command = {"SET", KeyOf(name),
                                      std::string(bytes->begin(), bytes->end())};
  if (ttl_seconds_ > 0) {
    command.push_back("EX");
    command.push_back(std::to_string(ttl_seconds_));
  }
  KV_ASSIGN_OR_RETURN(RedisReply reply, client_->Command(command));
  (void)reply;
  written_bytes_.fetch_add(bytes->size());
  written_blocks_.fetch_add(1);
  return Status::Ok();
}

Result<BlockBytes> RemoteTier::Get(const BlockName& name) {
  KV_ASSIGN_OR_RETURN(RedisReply reply, client_->Command({"GET", KeyOf(name)}));
  if (reply.type != RedisReply::Type::kString) {
    return NotFoundError("block " + name.ToHex() + " is not in the remote tier");
  }
  return BlockBytes(
      std::make_shared<const std::vector<uint8_t>>(reply.str.begin(), reply.str.end()));
}

Status RemoteTier::Erase(const BlockName& name) {
  return client_->Command({"DEL", KeyOf(name)}).status();
}

bool RemoteTier::Contains(const BlockName& name) const {
  Result<RedisReply> reply = client_->Command({"EXISTS", KeyOf(name)});
  return reply.ok() && reply->integer > 0;
}

Result<RemoteTier::Head> RemoteTier::ReadHead(const BlockName& name, size_t max_bytes) {
  KV_ASSIGN_OR_RETURN(
      std::vector<Result<RedisReply>> replies,
      client_->Pipeline({{"STRLEN", KeyOf(name)},
                         {"GETRANGE", KeyOf(name), "0", std::to_string(max_bytes - 1)}}));
  if (!replies[0].ok()) return replies[0].status();
  if (!replies[1].ok()) return replies[1].status();
  if (replies[0]->integer <= 0) {
    return NotFoundError("block " + name.ToHex() + " is not in the remote tier");
  }
  Head head;
  head.size = static_cast<uint64_t>(replies[0]->integer);
  head.prefix.assign(replies[1]->str.begin(), replies[1]->str.end());
  return head;
}

Result<std::vector<uint64_t>> RemoteTier::Sizes(std::span<const BlockName> names) {
  std::vector<std::vector<std::string>> commands;
  commands.reserve(names.size());
  for (const BlockName& name : names) commands.push_back({"STRLEN", KeyOf(name)});
  KV_ASSIGN_OR_RETURN(std::vector<Result<RedisReply>> replies, client_->Pipeline(commands));
  std::vector<uint64_t> sizes;
  for (const Result<RedisReply>& reply : replies) {
    sizes.push_back(reply.ok() && reply->integer > 0 ? static_cast<uint64_t>(reply->integer) : 0);
  }
  return sizes;
}

}  // namespace kvault::store
