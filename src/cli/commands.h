// cli/commands.h: one entry point per subcommand (cmd_<verb>.cc). Each takes the arguments
// after the verb (argv[0] is the verb) and returns the process exit status.
#pragma once

namespace kvault::cli {

int RunMakeModel(int argc, char** argv);
int RunComplete(int argc, char** argv);
int RunServe(int argc, char** argv);
int RunBench(int argc, char** argv);
int RunChat(int argc, char** argv);
int RunDoctor(int argc, char** argv);
int RunSession(int argc, char** argv);

}  // namespace kvault::cli
