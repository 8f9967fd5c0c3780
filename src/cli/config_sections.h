// cli/config_sections.h: the config file's second form, KV3D's sections
// ({"server": {...}, "cache": {...}, "model": {...}}), translated into kvault's own flat form,
// whose keys are `kvault serve`'s flag names (cli/serve_options.h applies that form). A file
// may mix the two: keys outside the sections stay as they are.
//
// What each KV3D key becomes (flags in their config-file spelling):
// | KV3D key            | kvault                                                       |
// |---------------------|--------------------------------------------------------------|
// | server.host         | host                                                         |
// | server.port         | port                                                         |
// | server.threads      | threads                                                      |
// | server.api_key      | api_key; "" = no key (KV3D's default), so nothing is set     |
// | cache.ram_warm_mb   | cache_ram_mb (MiB, as in KV3D)                               |
// | cache.ssd_cold_path | cache_dir; "" = no cold tier, so cache_disk_gb 0             |
// | cache.gpu_hot_mb    | kv_cache_memory "<N>MB" (the device KV budget)               |
// | model.path          | model                                                        |
// | model.id            | refused: kvault names the model after the GGUF file          |
// A refused key has no kvault setting to map to; the message names what to do instead.
// "model" is a section only when its value is an object; a string is the --model flag.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "kvault/base/json.h"
#include "kvault/base/result.h"

namespace kvault::cli {

// `config` (an object) with each section replaced by the flat keys its keys map to; a config
// without sections comes back unchanged. InvalidArgument, one line that starts with `source`,
// for a "server" or "cache" that is not an object, a key the section does not have, a refused
// key, or a setting given both in a section and at the top level.
Result<Json> FlattenConfigSections(Json config, const std::string& source);

// Parses `text` (JSON) and flattens it: the flat config `kvault serve` applies.
// InvalidArgument for malformed text or a value that is not an object.
Result<Json> ParseConfigText(std::string_view text, const std::string& source);

}  // namespace kvault::cli
