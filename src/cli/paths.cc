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

}  // namespace kvault::cli
