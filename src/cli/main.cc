// kvault: the command-line entry point. Dispatches to one subcommand per verb.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "cli/commands.h"

#include "kvault/build_info.h"
#include "kvault/engine/llama_runtime.h"

namespace {

struct Command {
  const char* verb;
  int (*run)(int, char**);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"serve", kvault::cli::RunServe, "run the OpenAI-compatible HTTP server"},
    {"chat", kvault::cli::RunChat, "chat with a local model in the terminal"},
    {"complete", kvault::cli::RunComplete, "print a completion of a prompt"},
    {"doctor", kvault::cli::RunDoctor, "check that this machine can run kvault"},
    {"session", kvault::cli::RunSession, "list, inspect or delete saved sessions"},
    {"make-model", kvault::cli::RunMakeModel, "write a random-weight GGUF model of a real shape"},
    {"bench", kvault::cli::RunBench, "run a benchmark against llama.cpp's own tools"},
};

void PrintUsage(FILE* out) {
  std::fprintf(out, "usage: kvault <command> [options]   (kvault <command> --help for more)\n\n");
  for (const Command& command : kCommands) {
    std::fprintf(out, "  %-12s %s\n", command.verb, command.summary);
  }
  std::fprintf(out, "\n  --version    print kvault's and llama.cpp's versions\n");
}

void PrintVersion() {
  std::printf("kvault %s\n", kvault::kKvaultVersion);
  std::printf("llama.cpp %s\n", kvault::kLlamaCommit);
  std::printf("backend %s\n", kvault::engine::LlamaSupportsGpuOffload() ? "cpu+gpu" : "cpu");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return 2;
  }
  const std::string_view verb = argv[1];
  if (verb == "--version" || verb == "version") {
    PrintVersion();
    return 0;
  }
  if (verb == "--help" || verb == "-h" || verb == "help") {
    PrintUsage(stdout);
    return 0;
  }
  for (const Command& command : kCommands) {
    if (verb == command.verb) return command.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "kvault: error: unknown command '%s' (see kvault --help)\n", argv[1]);
  return 2;
}
