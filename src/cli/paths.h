// cli/paths.h: where kvault keeps files by default (XDG base directories).
#pragma once

#include <string>

namespace kvault::cli {

// $XDG_DATA_HOME/kvault or ~/.local/share/kvault: conversations, sessions, knowledge.
std::string DefaultDataDir();
// $XDG_CACHE_HOME/kvault or ~/.cache/kvault: KV blocks, the llama.cpp build.
std::string DefaultCacheDir();
// $XDG_CONFIG_HOME/kvault/config.json or ~/.config/kvault/config.json: the config file
// `kvault serve` reads when present and `kvault doctor --write-config` writes; "" without
// either variable.
std::string DefaultConfigPath();

}  // namespace kvault::cli
