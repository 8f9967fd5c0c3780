#include "tests/integration/server_process.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <regex>

#include "tests/test_env.h"
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace kvault::testing {

ServerProcess::ServerProcess(const std::vector<std::string>& args,
                             const std::vector<std::string>& extra_env) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return;
  std::vector<std::string> argv = {KvaultBinary(), "serve", "--port", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  // Unless the test chose them (restart tests do), state goes to a private folder, so tests
  // neither share blocks and journals with each other nor touch the user's.
  auto has = [&](const char* flag) {
    return std::find(args.begin(), args.end(), flag) != args.end();
  };
  if (!has("--cache-dir") || !has("--data-dir")) {
    char pattern[] = "/tmp/kvault_server_XXXXXX";
    if (::mkdtemp(pattern) != nullptr) state_dir_ = pattern;
    if (!has("--cache-dir")) argv.insert(argv.end(), {"--cache-dir", state_dir_ + "/blocks"});
    if (!has("--data-dir")) argv.insert(argv.end(), {"--data-dir", state_dir_ + "/data"});
  }
  std::vector<char*> c_argv;
  for (std::string& arg : argv) c_argv.push_back(arg.data());
  c_argv.push_back(nullptr);
  std::vector<std::string> env_strings = extra_env;
  std::vector<char*> c_env;
  for (char** e = environ; *e != nullptr; ++e) c_env.push_back(*e);
  for (std::string& e : env_strings) c_env.push_back(e.data());
  c_env.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  const int rc = posix_spawn(&pid_, c_argv[0], &actions, nullptr, c_argv.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    pid_ = -1;
    return;
  }
  stderr_fd_ = pipe_fds[0];
  reader_ = std::thread([this] {
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::read(stderr_fd_, buffer, sizeof(buffer))) > 0) {
      MutexLock lock(&mu_);
      log_.append(buffer, static_cast<size_t>(n));
    }
  });
  const std::regex serving("serving .* on http://[0-9.]+:([0-9]+)");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch match;
    const std::string text = log();
    if (std::regex_search(text, match, serving)) {
      port_ = std::stoi(match[1].str());
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited before serving
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (reader_.joinable()) reader_.join();
  if (stderr_fd_ >= 0) ::close(stderr_fd_);
  if (!state_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(state_dir_, ignored);
  }
}

std::string ServerProcess::log() const {
  MutexLock lock(&mu_);
  return log_;
}

int ServerProcess::Terminate(int timeout_seconds) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

}  // namespace kvault::testing
