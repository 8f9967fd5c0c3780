#include "kvault/engine/model_fingerprint.h"

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include <fcntl.h>
#include <gguf.h>
#include <unistd.h>

#include "kvault/base/file.h"
#include "kvault/base/status_macros.h"

namespace kvault::engine {
namespace {

constexpr size_t kSampleBytes = 4096;

struct GgufDeleter {
  void operator()(gguf_context* ctx) const { gguf_free(ctx); }
};
using GgufPtr = std::unique_ptr<gguf_context, GgufDeleter>;

size_t ScalarSize(gguf_type type) {
  switch (type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
  }
}

void HashValue(const gguf_context* ctx, int64_t id, Hasher* hasher) {
  const gguf_type type = gguf_get_kv_type(ctx, id);
  hasher->UpdatePod(static_cast<int32_t>(type));
  if (type == GGUF_TYPE_STRING) {
    hasher->Update(std::string_view(gguf_get_val_str(ctx, id)));
    return;
  }
  if (type != GGUF_TYPE_ARRAY) {
    const auto* data = static_cast<const uint8_t*>(gguf_get_val_data(ctx, id));
    hasher->Update(std::span<const uint8_t>(data, ScalarSize(type)));
    return;
  }
  const gguf_type element_type = gguf_get_arr_type(ctx, id);
  const size_t n = gguf_get_arr_n(ctx, id);
  hasher->UpdatePod(static_cast<int32_t>(element_type));
  hasher->UpdatePod(static_cast<uint64_t>(n));
  if (element_type == GGUF_TYPE_STRING) {
    for (size_t i = 0; i < n; ++i) {
      const std::string_view text(gguf_get_arr_str(ctx, id, i));
      hasher->UpdatePod(static_cast<uint64_t>(text.size()));
      hasher->Update(text);
    }
  } else {
    const auto* data = static_cast<const uint8_t*>(gguf_get_arr_data(ctx, id));
    hasher->Update(std::span<const uint8_t>(data, n * ScalarSize(element_type)));
  }
}

Status HashTensorSample(int fd, uint64_t offset, uint64_t size, Hasher* hasher) {
  std::vector<uint8_t> buffer(std::min<uint64_t>(size, kSampleBytes));
  const uint64_t starts[2] = {offset, offset + size - buffer.size()};
  for (uint64_t start : starts) {
    const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(start));
    if (n != static_cast<ssize_t>(buffer.size())) {
      return InvalidArgumentError("model file is truncated: tensor data at offset " +
                                  std::to_string(start) + " cannot be read");
    }
    hasher->Update(buffer);
  }
  return Status::Ok();
}

}  // namespace

Status CheckGgufMagic(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFoundError("model file not found: " + path);
    return ErrnoError("cannot open model file " + path, errno);
  }
  char magic[4] = {};
  const ssize_t n = ::read(fd, magic, sizeof(magic));
  ::close(fd);
  if (n != 4 || std::string_view(magic, 4) != "GGUF") {
    return InvalidArgumentError("not a GGUF model file: " + path);
  }
  return Status::Ok();
}

Result<Hash128> ComputeModelFingerprint(const std::string& path) {
  KV_RETURN_IF_ERROR(CheckGgufMagic(path));
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  GgufPtr ctx(gguf_init_from_file(path.c_str(), params));
  if (!ctx) return InvalidArgumentError("cannot parse GGUF metadata of " + path);

  Hasher hasher;
  hasher.Update(std::string_view("kvault-model-fingerprint-v1"));
  const int64_t n_kv = gguf_get_n_kv(ctx.get());
  for (int64_t i = 0; i < n_kv; ++i) {
    hasher.Update(std::string_view(gguf_get_key(ctx.get(), i)));
    HashValue(ctx.get(), i, &hasher);
  }

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open model file " + path, errno);
  const uint64_t data_offset = gguf_get_data_offset(ctx.get());
  Status status;
  const int64_t n_tensors = gguf_get_n_tensors(ctx.get());
  for (int64_t i = 0; i < n_tensors && status.ok(); ++i) {
    hasher.Update(std::string_view(gguf_get_tensor_name(ctx.get(), i)));
    hasher.UpdatePod(static_cast<int32_t>(gguf_get_tensor_type(ctx.get(), i)));
    const int64_t* ne = gguf_get_tensor_ne(ctx.get(), i);
    for (int d = 0; d < 4; ++d) hasher.UpdatePod(ne[d]);
    const uint64_t offset = data_offset + gguf_get_tensor_offset(ctx.get(), i);
    hasher.UpdatePod(offset);
    const uint64_t size = gguf_get_tensor_size(ctx.get(), i);
    if (size > 0) status = HashTensorSample(fd, offset, size, &hasher);
  }
  ::close(fd);
  KV_RETURN_IF_ERROR(status);
  return hasher.Digest128();
}

}  // namespace kvault::engine
