#include "kvault/memory/vector_index.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <unordered_set>

// hnswlib 0.6's SSE prefetches read one link past the end of a node's link list: harmless
// in practice, but AddressSanitizer stops there, so sanitized builds use its plain loops.
// (hnswlib.h also defines non-inline functions: include it in this file only.)
#if defined(__SANITIZE_ADDRESS__)
#define NO_MANUAL_VECTORIZATION
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_MANUAL_VECTORIZATION
#endif
#endif
#include <hnswlib/hnswlib.h>

namespace kvault::memory {
namespace {

// hnswlib's graph parameters: its documented defaults for M and construction, a search
// breadth of at least 64 candidates.
constexpr size_t kLinksPerNode = 16;
constexpr size_t kConstructionBreadth = 200;
constexpr size_t kMinSearchBreadth = 64;
// Label ranges up to this wide are searched exactly, vector by vector.
constexpr uint64_t kExactSearchLabels = 4096;
constexpr size_t kInitialCapacity = 1024;

Status HnswError(const std::exception& error, std::string_view what) {
  return ResourceExhaustedError("memory: hnswlib " + std::string(what) + ": " + error.what());
}

}  // namespace

std::vector<float> Normalized(std::span<const float> vector) {
  double norm = 0;
  for (float x : vector) norm += static_cast<double>(x) * x;
  if (norm <= 0 || !std::isfinite(norm)) return {};
  const auto scale = static_cast<float>(1.0 / std::sqrt(norm));
  std::vector<float> out(vector.begin(), vector.end());
  for (float& x : out) x *= scale;
  return out;
}

std::string EncodeEmbedding(std::span<const float> vector) {
  float scale = 0;
  for (float x : vector) scale = std::max(scale, std::fabs(x));
  scale /= 127.0f;
  std::string bytes(sizeof(float) + vector.size(), '\0');
  std::memcpy(bytes.data(), &scale, sizeof(float));
  for (size_t i = 0; i < vector.size(); ++i) {
    const float q = scale > 0 ? std::round(vector[i] / scale) : 0.0f;
    bytes[sizeof(float) + i] =
        static_cast<char>(static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f)));
  }
  return bytes;
}

Result<std::vector<float>> DecodeEmbedding(std::string_view bytes, int32_t dim) {
  if (dim < 1 || bytes.size() != sizeof(float) + static_cast<size_t>(dim)) {
    return CorruptionError("memory: stored embedding has " + std::to_string(bytes.size()) +
                           " bytes, expected " + std::to_string(sizeof(float) + dim));
  }
  float scale = 0;
  std::memcpy(&scale, bytes.data(), sizeof(float));
  if (!std::isfinite(scale)) return CorruptionError("memory: stored embedding scale is not finite");
  std::vector<float> vector(static_cast<size_t>(dim));
  for (size_t i = 0; i < vector.size(); ++i) {
    vector[i] = scale * static_cast<float>(static_cast<int8_t>(bytes[sizeof(float) + i]));
  }
  return vector;
}

struct VectorIndex::Impl {
  explicit Impl(int32_t dim) : space(static_cast<size_t>(dim)) {}
  hnswlib::InnerProductSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph;
  std::unordered_set<int64_t> live;
};

VectorIndex::VectorIndex(int32_t dim) : dim_(dim), impl_(std::make_unique<Impl>(dim)) {}
VectorIndex::~VectorIndex() = default;

Result<std::unique_ptr<VectorIndex>> VectorIndex::Create(int32_t dim) {
  if (dim < 1) return InvalidArgumentError("memory: embedding dimension must be positive");
  auto index = std::unique_ptr<VectorIndex>(new VectorIndex(dim));
  try {
    index->impl_->graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(
        &index->impl_->space, kInitialCapacity, kLinksPerNode, kConstructionBreadth);
  } catch (const std::exception& error) {
    return HnswError(error, "create");
  }
  return index;
}

Status VectorIndex::Add(int64_t label, std::span<const float> vector) {
  if (static_cast<int64_t>(vector.size()) != dim_) {
    return InvalidArgumentError("memory: embedding has " + std::to_string(vector.size()) +
                                " dimensions, the index " + std::to_string(dim_));
  }
  const std::vector<float> unit = Normalized(vector);
  if (unit.empty()) return InvalidArgumentError("memory: embedding is zero or not finite");
  hnswlib::HierarchicalNSW<float>& graph = *impl_->graph;
  try {
    // A known label (even a removed one) is updated in place and unmarked by hnswlib.
    if (graph.cur_element_count == graph.max_elements_) graph.resizeIndex(graph.max_elements_ * 2);
    graph.addPoint(unit.data(), static_cast<hnswlib::labeltype>(label));
  } catch (const std::exception& error) {
    return HnswError(error, "add");
  }
  impl_->live.insert(label);
  return Status::Ok();
}

void VectorIndex::Remove(int64_t label) {
  if (impl_->live.erase(label) == 0) return;
  try {
    impl_->graph->markDelete(static_cast<hnswlib::labeltype>(label));
  } catch (const std::exception&) {
    // Cannot happen for a live label; the label is out of `live` either way.
  }
}

size_t VectorIndex::size() const { return impl_->live.size(); }

Result<std::vector<VectorHit>> VectorIndex::Search(std::span<const float> query, size_t k,
                                                   int64_t min_label, int64_t max_label) const {
  std::vector<VectorHit> hits;
  const std::vector<float> unit = Normalized(query);
  if (unit.size() != static_cast<size_t>(dim_) || k == 0 || impl_->live.empty()) return hits;
  // A narrow label range (the chunks of one day a question names) is scored exactly: the
  // graph search below would widen until it had walked nearly every vector of the index.
  const int64_t span = max_label - min_label + 1;
  if (span > 0 && static_cast<uint64_t>(span) <= kExactSearchLabels) {
    try {
      for (int64_t id = min_label; id <= max_label; ++id) {
        if (!impl_->live.contains(id)) continue;
        const std::vector<float> stored =
            impl_->graph->getDataByLabel<float>(static_cast<hnswlib::labeltype>(id));
        float dot = 0;
        for (size_t i = 0; i < unit.size(); ++i) dot += unit[i] * stored[i];
        hits.push_back({id, dot});
      }
    } catch (const std::exception& error) {
      return HnswError(error, "search");
    }
    std::sort(hits.begin(), hits.end(),
              [](const VectorHit& a, const VectorHit& b) { return a.similarity > b.similarity; });
    if (hits.size() > k) hits.resize(k);
    return hits;
  }
  // hnswlib 0.6 has no search filter: ask for more neighbours until k pass the label range or
  // every live vector has been returned.
  for (size_t want = std::min(impl_->live.size(), 4 * k + 16);; want *= 2) {
    want = std::min(want, impl_->live.size());
    hits.clear();
    try {
      impl_->graph->setEf(std::max(want, kMinSearchBreadth));
      auto found = impl_->graph->searchKnnCloserFirst(unit.data(), want);
      for (const auto& [distance, label] : found) {
        const auto id = static_cast<int64_t>(label);
        if (id < min_label || id > max_label) continue;
        hits.push_back({id, 1.0f - distance});
        if (hits.size() == k) break;
      }
    } catch (const std::exception& error) {
      return HnswError(error, "search");
    }
    if (hits.size() == k || want == impl_->live.size()) return hits;
  }
}

}  // namespace kvault::memory
