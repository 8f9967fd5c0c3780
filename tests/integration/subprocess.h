// tests/integration/subprocess.h: runs the kvault binary the way a user does, capturing its
// output and exit status, for end-to-end tests.
#pragma once

#include <string>
#include <vector>

namespace kvault::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 if killed by a signal
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with the arguments and `input` on its stdin, waits, and returns
// what it printed.
ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& input = "");

}  // namespace kvault::testing
