// testing/llama_server.h: a real llama-server child (built from the same llama.cpp source by
// `make llama-tools`) on a free 127.0.0.1 port, the upstream of the --upstream tests and
// benchmarks. Its log goes to a file beside it; Stop() and Start() model an upstream that
// dies and comes back, Pause() one that hangs. GET /slots names the prompt each slot last
// received (LLAMA_SERVER_SLOTS_DEBUG is set for it).
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

namespace kvault::testing {

class LlamaServer {
 public:
  // The llama-server binary: $KVAULT_LLAMA_BIN_DIR/llama-server, else the build's
  // (KVAULT_LLAMA_BIN_DIR at configure time); "" if there is none.
  static std::string BinaryPath();
  // `model`: a GGUF; `extra`: more flags (e.g. {"-c", "8192", "-np", "1"}).
  LlamaServer(std::string model, std::vector<std::string> extra = {});
  ~LlamaServer();  // stops it
  LlamaServer(const LlamaServer&) = delete;
  LlamaServer& operator=(const LlamaServer&) = delete;

  // Starts it (again on the same port); false if /health did not answer 200 within 60 s.
  bool Start();
  void Stop();    // SIGKILL
  void Pause();   // SIGSTOP: it holds its connections and answers nothing
  void Resume();  // SIGCONT
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  std::string log() const;

 private:
  std::string model_;
  std::vector<std::string> extra_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string log_path_;
};

}  // namespace kvault::testing
