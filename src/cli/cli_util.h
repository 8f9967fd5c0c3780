// cli/cli_util.h: what every subcommand shares: turning a Status into a one-line message and
// an exit code (cli/ alone maps codes to exit statuses), and running CLI11 (which throws) in
// one adapter that returns instead.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "kvault/base/status.h"

namespace kvault::cli {

// Exit statuses: 0 success, 1 runtime failure, 2 bad usage or input, 3 something named
// does not exist, 4 a resource ran out.
int ExitCodeFor(const Status& status);

// Prints "kvault: error: <message>" on one line and returns ExitCodeFor(status).
int ReportError(const Status& status);

// Parses argv; returns an exit code if the command should stop here (--help: 0; a bad flag
// or value: 2, after a one-line message), nullopt to continue.
std::optional<int> ParseArgs(CLI::App& app, int argc, char** argv);

}  // namespace kvault::cli
