#include "cli/cli_util.h"

#include <cstdio>

namespace kvault::cli {

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return 0;
    case StatusCode::kInvalidArgument:
    case StatusCode::kUnauthenticated: return 2;
    case StatusCode::kNotFound: return 3;
    case StatusCode::kResourceExhausted: return 4;
    default: return 1;
  }
}

int ReportError(const Status& status) {
  std::string message = status.message();
  for (char& c : message) {
    if (c == '\n') c = ' ';
  }
  std::fprintf(stderr, "kvault: error: %s\n", message.c_str());
  return ExitCodeFor(status);
}

std::optional<int> ParseArgs(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& error) {
    std::string message = error.what();
    for (char& c : message) {
      if (c == '\n') c = ' ';
    }
    std::fprintf(stderr, "kvault %s: error: %s (see --help)\n", app.get_name().c_str(),
                 message.c_str());
    return 2;
  }
  return std::nullopt;
}

}  // namespace kvault::cli
