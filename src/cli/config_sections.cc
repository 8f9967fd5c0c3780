#include "cli/config_sections.h"

#include <algorithm>
#include <array>
#include <set>

#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

// How a KV3D value becomes kvault's.
enum class Rule {
  kAsIs,               // the value, under `flag`
  kEmptyIsUnset,       // "" sets nothing; any other value as is
  kEmptyIsNoDiskTier,  // "" sets cache_disk_gb 0; a path sets `flag`
  kMebibytes,          // a number of MiB, as the memory size "<N>MB"
  kRefused,            // no kvault setting: `why` says what to set instead
};

struct SectionKey {
  std::string_view section;
  std::string_view key;
  std::string_view flag;  // kvault's flag, config-file spelling; empty when refused
  Rule rule;
  std::string_view why = "";
};

// The table of config_sections.h, in the seed's order.
constexpr std::array<SectionKey, 9> kSectionKeys = {{
    {"server", "host", "host", Rule::kAsIs},
    {"server", "port", "port", Rule::kAsIs},
    {"server", "threads", "threads", Rule::kAsIs},
    {"server", "api_key", "api_key", Rule::kEmptyIsUnset},
    {"cache", "gpu_hot_mb", "kv_cache_memory", Rule::kMebibytes},
    {"cache", "ram_warm_mb", "cache_ram_mb", Rule::kAsIs},
    {"cache", "ssd_cold_path", "cache_dir", Rule::kEmptyIsNoDiskTier},
    {"model", "path", "model", Rule::kAsIs},
    {"model", "id", "", Rule::kRefused,
     "kvault names the model after the GGUF file (see /v1/models) and accepts any 'model' in "
     "requests; remove the key"},
}};

constexpr std::array<std::string_view, 3> kSections = {"server", "cache", "model"};

bool IsSection(const Json& config, std::string_view name) {
  if (std::find(kSections.begin(), kSections.end(), name) == kSections.end()) return false;
  const auto it = config.find(std::string(name));
  // "model" alone is also a flag (a string); "server" and "cache" are never flags.
  return it != config.end() && (name != "model" || it->is_object());
}

// Flag names compare with '-' and '_' alike, as serve reads them.
std::string FlagKey(std::string_view key) {
  std::string flag(key);
  for (char& c : flag) c = c == '-' ? '_' : c;
  return flag;
}

std::string KeysOf(std::string_view section) {
  std::string keys;
  for (const SectionKey& entry : kSectionKeys) {
    if (entry.section == section) keys += (keys.empty() ? "" : ", ") + std::string(entry.key);
  }
  return keys;
}

const SectionKey* FindKey(std::string_view section, std::string_view key) {
  for (const SectionKey& entry : kSectionKeys) {
    if (entry.section == section && entry.key == key) return &entry;
  }
  return nullptr;
}

// The flat config being built, and the flags it sets (spelt by FlagKey).
struct FlatConfig {
  Json keys = Json::object();
  std::set<std::string> flags;

  // Adds `key` = `value`; InvalidArgument if the file already set that flag.
  Status Put(const std::string& key, Json value, const std::string& from,
             const std::string& source) {
    if (!flags.insert(FlagKey(key)).second) {
      return InvalidArgumentError(source + ": '" + from + "' sets " + FlagKey(key) +
                                  ", which the file sets elsewhere too");
    }
    keys[key] = std::move(value);
    return Status::Ok();
  }
};

// The flat keys one section's key maps to, added to `flat`.
Status Translate(const SectionKey& entry, const Json& value, FlatConfig& flat,
                 const std::string& source) {
  const std::string from = std::string(entry.section) + "." + std::string(entry.key);
  const bool empty = value.is_string() && value.get_ref<const std::string&>().empty();
  switch (entry.rule) {
    case Rule::kRefused:
      return InvalidArgumentError(source + ": '" + from +
                                  "' has no kvault setting: " + std::string(entry.why));
    case Rule::kEmptyIsUnset:
      if (empty) return Status::Ok();
      break;
    case Rule::kEmptyIsNoDiskTier:
      if (empty) return flat.Put("cache_disk_gb", 0, from, source);
      break;
    case Rule::kMebibytes:
      if (!value.is_number() || !(value.get<double>() >= 0)) {
        return InvalidArgumentError(source + ": '" + from + "' must be a number of MiB");
      }
      return flat.Put(std::string(entry.flag), DumpJson(value) + "MB", from, source);
    case Rule::kAsIs: break;
  }
  return flat.Put(std::string(entry.flag), value, from, source);
}

}  // namespace

Result<Json> FlattenConfigSections(Json config, const std::string& source) {
  if (!config.is_object()) return InvalidArgumentError(source + " is not an object");
  if (std::none_of(kSections.begin(), kSections.end(),
                   [&](std::string_view name) { return IsSection(config, name); })) {
    return config;
  }
  FlatConfig flat;
  // Top-level keys first (kept as spelt, for serve's messages), so that a section key that
  // repeats one is the one reported.
  for (auto it = config.begin(); it != config.end(); ++it) {
    if (IsSection(config, it.key())) continue;
    KV_RETURN_IF_ERROR(flat.Put(it.key(), it.value(), it.key(), source));
  }
  for (std::string_view section : kSections) {
    if (!IsSection(config, section)) continue;
    const Json& keys = *config.find(std::string(section));
    if (!keys.is_object()) {
      return InvalidArgumentError(source + ": '" + std::string(section) +
                                  "' must be an object (KV3D's section of " + KeysOf(section) +
                                  ")");
    }
    for (auto it = keys.begin(); it != keys.end(); ++it) {
      const SectionKey* entry = FindKey(section, it.key());
      if (entry == nullptr) {
        return InvalidArgumentError(source + ": unknown key '" + std::string(section) + "." +
                                    it.key() + "' (the " + std::string(section) + " section has " +
                                    KeysOf(section) + "; kvault's own flags go at the top level)");
      }
      KV_RETURN_IF_ERROR(Translate(*entry, it.value(), flat, source));
    }
  }
  return std::move(flat.keys);
}

Result<Json> ParseConfigText(std::string_view text, const std::string& source) {
  KV_ASSIGN_OR_RETURN(Json config, ParseJson(text));
  return FlattenConfigSections(std::move(config), source);
}

}  // namespace kvault::cli
