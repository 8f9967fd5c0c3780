#include "cli/paths.h"

#include <cstdlib>

namespace kvault::cli {
namespace {

std::string XdgDir(const char* variable, const char* fallback) {
  const char* value = std::getenv(variable);
  if (value != nullptr && *value != '\0') return std::string(value) + "/kvault";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/" + fallback + "/kvault";
}

}  // namespace

std::string DefaultDataDir() { return XdgDir("XDG_DATA_HOME", ".local/share"); }
std::string DefaultCacheDir() { return XdgDir("XDG_CACHE_HOME", ".cache"); }

std::string DefaultConfigPath() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  const char* home = std::getenv("HOME");
  if (xdg != nullptr && *xdg != '\0') return std::string(xdg) + "/kvault/config.json";
  if (home != nullptr) return std::string(home) + "/.config/kvault/config.json";
  return "";
}

}  // namespace kvault::cli
