// cli/serve_options.h: `kvault serve`'s flags, each also settable by a KVAULT_<NAME>
// environment variable and by a key of a JSON config file. Precedence: flag, then
// environment, then file, then the default. Unknown flags, unknown config keys and bad values
// stop with a one-line message and exit status 2.
#pragma once

#include <optional>
#include <string>

#include "cli/cli_util.h"

#include "kvault/server/server_config.h"

namespace kvault::cli {

class ServeOptions {
 public:
  ServeOptions();
  // nullopt to go on; otherwise the exit status (0 after --help).
  std::optional<int> Parse(int argc, char** argv);
  const server::ServerConfig& config() const { return config_; }

 private:
  CLI::App app_;
  server::ServerConfig config_;
  std::string api_keys_;
  std::string config_path_;
  int max_body_mb_ = 64;
};

}  // namespace kvault::cli
