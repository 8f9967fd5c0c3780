// engine/model_fingerprint.h: a 128-bit identity of a GGUF model file, so KV state made by one
// model is never restored into another. It hashes every metadata key and value (architecture,
// shapes, the whole vocabulary and chat template), every tensor's name, type, shape and offset,
// and 4 KiB from each end of every tensor's data: models that differ only in their weights
// (two seeds of make-model, two fine-tunes) still get different fingerprints, for about 2 MiB
// of reads on a 500M-parameter model.
//
// Thread-safety: a pure function of the file.
#pragma once

#include <string>

#include "kvault/base/hash.h"
#include "kvault/base/result.h"

namespace kvault::engine {

// NotFound if the file is missing; InvalidArgument if it is not a readable GGUF file.
Result<Hash128> ComputeModelFingerprint(const std::string& path);

// OK if the file starts with the GGUF magic; InvalidArgument / NotFound otherwise. Cheap.
Status CheckGgufMagic(const std::string& path);

}  // namespace kvault::engine
