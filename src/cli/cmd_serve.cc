// kvault serve: the HTTP server. (Minimal until the server module lands: /health and
// /v1/models over the loaded model.)
#include <csignal>
#include <cstdio>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include <httplib.h>

#include "kvault/base/json.h"
#include "kvault/base/log.h"
#include "kvault/engine/model.h"

namespace kvault::cli {
namespace {

httplib::Server* g_server = nullptr;

void StopOnSignal(int) {
  if (g_server != nullptr) g_server->stop();
}

}  // namespace

int RunServe(int argc, char** argv) {
  CLI::App app("Serve a model over an OpenAI-compatible HTTP API.", "serve");
  std::string model_path = "models/default.gguf";
  std::string host = "127.0.0.1";
  int port = 8200;
  int window = 4096;
  int64_t cache_size = 10000000;
  app.add_option("-m,--model", model_path, "GGUF model file")->capture_default_str();
  app.add_option("--host", host, "address to listen on")->capture_default_str();
  app.add_option("--port", port, "port to listen on")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--window", window, "tokens the model sees per inference")->capture_default_str();
  app.add_option("--cache-size,--kessie-cache-size", cache_size,
                 "tokens each conversation remembers")
      ->capture_default_str();
  if (auto exit_code = ParseArgs(app, argc, argv)) return *exit_code;

  Result<std::unique_ptr<engine::Model>> model = engine::Model::Load({.path = model_path});
  if (!model.ok()) return ReportError(model.status());
  const engine::ModelInfo& info = (*model)->info();

  httplib::Server server;
  server.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(DumpJson({{"status", "ok"}, {"model", info.name}}), "application/json");
  });
  server.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    Json model_entry = {{"id", info.name},
                        {"object", "model"},
                        {"owned_by", "kvault"},
                        {"max_model_len", cache_size},
                        {"window", window}};
    res.set_content(DumpJson({{"object", "list"}, {"data", Json::array({model_entry})}}),
                    "application/json");
  });
  g_server = &server;
  std::signal(SIGINT, StopOnSignal);
  std::signal(SIGTERM, StopOnSignal);
  if (!server.bind_to_port(host, port)) {
    return ReportError(UnavailableError("cannot listen on " + host + ":" + std::to_string(port)));
  }
  KV_LOG(kInfo) << "kvault serving " << info.name << " on http://" << host << ":" << port;
  server.listen_after_bind();
  g_server = nullptr;
  return 0;
}

}  // namespace kvault::cli
