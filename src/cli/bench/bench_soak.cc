// kvault bench soak: does kvault stay well under sustained overload? A server with few
// conversation threads and a short queue (--conversation-threads, --conversation-queue) gets
// more clients than threads + queue, for --rounds rounds of --round-seconds each. Every client
// thread loops over a mix of what real clients send: chat turns on its own conversation
// (multi-turn, streamed and not, ended and replaced every few requests), appends to it, plain
// /v1/completions, GET /health and /metrics, and streams it drops after a few events (a user
// closing the tab).
//
// Overload must be answered, not absorbed: a generation beyond threads + queue gets 503 at
// once, every other request 200, and none is lost (a connection error the client did not
// cause, a stream cut short) or hung (no answer within --timeout-seconds). So the report has
// the counts of 200, 503 and other statuses, and the latency of the 503s. The issue asks for
// 503s within 100 ms; the requirement is on their p99, and the max and how many took longer
// are reported beside it: on a small shared machine, whose cores llama.cpp's threads keep
// busy, a thread is now and then descheduled for longer than that. What overload must not do
// to the server is measured between rounds:
//   - a mid-stream disconnect frees its thread at once: --conversation-threads streams that run
//     without end (ignore_eos) are dropped together, and the time until /metrics shows
//     kvault_running_requests back at 0 must stay under 1 s;
//   - nothing piles up: with traffic stopped, kvault_queue_depth and kvault_running_requests
//     return to 0 within a few seconds, and the server's 503 count (kvault_rejected_requests)
//     matches the 503s the clients saw;
//   - memory levels off: the server's RSS (VmRSS) after each round; the last round may grow
//     at most 5% over the round before. Beside it, what may rightly grow: the KV block tier
//     in RAM (given a small budget, --cache-ram-mb, so that it is full after the first round
//     and the cache filling up is not taken for a leak), the radix tree over it and the disk
//     tier, and the conversations held.
// The driver exits with an error when any of these fails, so a run can be trusted by its
// exit status alone.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"
#include <httplib.h>

#include "kvault/base/file.h"
#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct SoakOptions : BenchOptions {
  int rounds = 5;
  int round_seconds = 20;
  int conversation_threads = 2;
  int conversation_queue = 2;
  int clients = 0;  // 0: twice threads + queue
  int max_tokens = 16;
  int timeout_seconds = 30;
  int cache_ram_mb = 4;  // the server's --cache-ram-mb
  uint32_t seed = 1;
};

constexpr int kWindow = 1024;
constexpr int kRequestsPerConversation = 8;  // then the conversation is ended and replaced
constexpr int kEventsBeforeDisconnect = 3;   // the role chunk and two pieces of text
constexpr int kEndlessTokens = kWindow / 4;  // a chat reply's most tokens in a 1024 window
constexpr double kMaxRejectionMs = 100;
constexpr double kMaxFreeMs = 1000;
constexpr double kMaxRssGrowth = 0.05;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// What a client sends. `admitted`: the route goes through admission, so it may be refused
// with 503; a 503 anywhere else is a failure. The weights make generation ~75% of requests,
// enough to keep threads and queue full.
enum class Op { kChat, kChatStream, kCompletion, kAppend, kHealth, kMetrics, kDisconnect, kEnd };
struct OpInfo {
  Op op;
  const char* name;
  int weight;  // of the random pick (kEnd is not picked: it follows kRequestsPerConversation)
  bool admitted;
  bool stores;  // an answer means the server holds the client's conversation
};
constexpr OpInfo kOps[] = {
    {Op::kChat, "chat", 30, true, true},
    {Op::kChatStream, "chat_stream", 25, true, true},
    {Op::kCompletion, "completion", 10, true, false},
    {Op::kAppend, "append", 10, false, true},
    {Op::kHealth, "health", 5, false, false},
    {Op::kMetrics, "metrics", 5, false, false},
    {Op::kDisconnect, "disconnect", 10, true, true},
};
constexpr OpInfo kEndOp = {Op::kEnd, "end", 0, false, false};

struct Request {
  std::string path;
  Json body;  // null: GET
  bool stream = false;
  int disconnect_after_events = 0;  // > 0: the client closes the connection after them
};

enum class Fate { kAnswered, kDisconnected, kHung, kLost };
struct Outcome {
  Fate fate = Fate::kAnswered;
  int status = 0;  // of an answered request
  double ms = 0;
  std::string error;  // why it was lost
};

// What a client learns of a server-sent event stream as it arrives.
struct SseScan {
  int events = 0;
  bool done = false;   // [DONE] arrived: the whole reply did
  bool error = false;  // an error event: the reply failed after its 200
  std::string buffer;  // an event's start, until its end arrives

  void Add(const char* data, size_t length) {
    buffer.append(data, length);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, end + 2)) {
      const std::string_view event(buffer.data(), end);
      ++events;
      done = done || event == "data: [DONE]";
      error = error || event.find("\"error\"") != std::string_view::npos;
    }
  }
};

// One request on a connection of its own, with a client-side deadline.
Outcome Send(int port, const Request& r, int timeout_seconds) {
  httplib::Client http("127.0.0.1", port);
  http.set_connection_timeout(std::chrono::seconds(timeout_seconds));
  http.set_read_timeout(std::chrono::seconds(timeout_seconds));
  http.set_write_timeout(std::chrono::seconds(timeout_seconds));
  http.set_max_timeout(std::chrono::seconds(timeout_seconds));
  SseScan sse;
  const Clock::time_point start = Clock::now();
  httplib::Result result;
  if (r.body.is_null()) {
    result = http.Get(r.path);
  } else if (!r.stream) {
    result = http.Post(r.path, DumpJson(r.body), "application/json");
  } else {
    result =
        http.Post(r.path, httplib::Headers{}, DumpJson(r.body), "application/json",
                  [&](const char* data, size_t length) {
                    sse.Add(data, length);
                    return r.disconnect_after_events == 0 || sse.events < r.disconnect_after_events;
                  });
  }
  Outcome out;
  out.ms = MsSince(start);
  if (!result) {
    const httplib::Error error = result.error();
    if (error == httplib::Error::Canceled && r.disconnect_after_events > 0) {
      out.fate = Fate::kDisconnected;
    } else if (error == httplib::Error::Timeout || error == httplib::Error::ConnectionTimeout ||
               out.ms >= 950.0 * timeout_seconds) {  // a read that timed out says only "Read"
      out.fate = Fate::kHung;
    } else {
      out.fate = Fate::kLost;
      out.error = r.path + ": " + httplib::to_string(error);
    }
    return out;
  }
  out.status = result->status;
  // A 200 stream is whole only with [DONE] and no error event; anything less lost its reply.
  if (r.stream && out.status == 200 && (!sse.done || sse.error)) {
    out.fate = Fate::kLost;
    out.error = r.path + ": stream " + (sse.error ? "reported an error" : "ended early");
  }
  return out;
}

// A client's own conversation and randomness, kept across rounds.
struct ClientState {
  int client = 0;
  int generation = 0;   // how many conversations it has ended
  int requests = 0;     // answered (not 503) since the current conversation began
  bool stored = false;  // the server holds the current conversation (it can be ended)
  std::mt19937 random;

  std::string conversation() const {
    return "soak-" + std::to_string(client) + "-" + std::to_string(generation);
  }
  void NextConversation() {
    ++generation;
    requests = 0;
    stored = false;
  }
  void Record(const OpInfo& info, const Outcome& out) {
    if (info.op == Op::kEnd) return NextConversation();
    if (out.status == 503) return;
    ++requests;
    // A dropped stream stored its user turn before the first event.
    stored = stored || (info.stores && (out.status == 200 || out.fate == Fate::kDisconnected));
  }
};

const OpInfo& PickOp(ClientState& state) {
  if (state.requests >= kRequestsPerConversation) return kEndOp;
  int total = 0;
  for (const OpInfo& info : kOps) total += info.weight;
  int pick = std::uniform_int_distribution<int>(0, total - 1)(state.random);
  for (const OpInfo& info : kOps) {
    if (pick < info.weight) return info;
    pick -= info.weight;
  }
  return kOps[0];
}

Json UserMessage(const ClientState& state) {
  return Json::array({{{"role", "user"},
                       {"content", "Message " + std::to_string(state.requests) + " of " +
                                       state.conversation() + ": tell me more."}}});
}

Request MakeRequest(Op op, const ClientState& state, int max_tokens) {
  const Json chat = {{"conversation_id", state.conversation()},
                     {"messages", UserMessage(state)},
                     {"max_tokens", max_tokens}};
  switch (op) {
    case Op::kChat: return {"/v1/chat/completions", chat};
    case Op::kChatStream: {
      Json body = chat;
      body["stream"] = true;
      return {"/v1/chat/completions", body, true};
    }
    case Op::kCompletion: {
      // Stateless; every other one streamed.
      const bool stream = state.requests % 2 == 1;
      return {"/v1/completions",
              {{"prompt", "Once upon a time, " + state.conversation() + " said"},
               {"max_tokens", max_tokens},
               {"stream", stream}},
              stream};
    }
    case Op::kAppend: {
      Json messages = UserMessage(state);
      messages.push_back({{"role", "assistant"}, {"content", "Noted."}});
      return {"/v1/conversations/append",
              {{"conversation_id", state.conversation()}, {"messages", messages}}};
    }
    case Op::kHealth: return {"/health", nullptr};
    case Op::kMetrics: return {"/metrics", nullptr};
    case Op::kDisconnect: {
      // Long enough to be still generating when the client goes.
      Json body = chat;
      body["stream"] = true;
      body["max_tokens"] = kEndlessTokens;
      body["ignore_eos"] = true;
      return {"/v1/chat/completions", body, true, kEventsBeforeDisconnect};
    }
    case Op::kEnd: return {"/v1/conversations/end", {{"conversation_id", state.conversation()}}};
  }
  return {};
}

// The clients' view of a stretch of traffic.
struct Tally {
  int64_t requests = 0;
  int64_t ok = 0;             // 200
  int64_t rejected = 0;       // 503 from an admitted route
  int64_t other = 0;          // any other status (5xx included)
  int64_t server_errors = 0;  // 5xx other than an admitted route's 503
  int64_t disconnected = 0;
  int64_t hung = 0;
  int64_t lost = 0;
  std::map<std::string, int64_t> by_op;
  std::map<std::string, int64_t> other_statuses;  // "route status" -> count
  std::vector<double> rejection_ms;
  std::vector<std::string> failures;  // the first few lost requests, for the report

  void Add(const OpInfo& info, const Outcome& out) {
    ++requests;
    ++by_op[info.name];
    switch (out.fate) {
      case Fate::kDisconnected: ++disconnected; return;
      case Fate::kHung: ++hung; return;
      case Fate::kLost:
        ++lost;
        if (failures.size() < 5) failures.push_back(out.error);
        return;
      case Fate::kAnswered: break;
    }
    if (out.status == 200) {
      ++ok;
    } else if (out.status == 503 && info.admitted) {
      ++rejected;
      rejection_ms.push_back(out.ms);
    } else {
      ++other;
      if (out.status >= 500) ++server_errors;
      ++other_statuses[std::string(info.name) + " " + std::to_string(out.status)];
    }
  }
  void Merge(const Tally& t) {
    requests += t.requests, ok += t.ok, rejected += t.rejected, other += t.other;
    server_errors += t.server_errors, disconnected += t.disconnected, hung += t.hung;
    lost += t.lost;
    for (const auto& [name, n] : t.by_op) by_op[name] += n;
    for (const auto& [name, n] : t.other_statuses) other_statuses[name] += n;
    rejection_ms.insert(rejection_ms.end(), t.rejection_ms.begin(), t.rejection_ms.end());
    for (const std::string& f : t.failures) {
      if (failures.size() < 5) failures.push_back(f);
    }
  }
};

// Every client loops until the round's end; a request under way then is finished.
Tally RunRound(int port, const SoakOptions& o, std::vector<ClientState>& states) {
  const Clock::time_point end = Clock::now() + std::chrono::seconds(o.round_seconds);
  Tally tally;
  std::mutex mu;
  std::vector<std::thread> threads;
  for (ClientState& state : states) {
    threads.emplace_back([&] {
      while (Clock::now() < end) {
        const OpInfo& info = PickOp(state);
        if (info.op == Op::kEnd && !state.stored) {  // all refused: nothing to end
          state.NextConversation();
          continue;
        }
        const Outcome out =
            Send(port, MakeRequest(info.op, state, o.max_tokens), o.timeout_seconds);
        {
          std::lock_guard<std::mutex> lock(mu);
          tally.Add(info, out);
        }
        state.Record(info, out);
        // A refused client comes back soon, as a retrying one would, but does not spin: the
        // queue stays full without the clients' loop eating the server's cores.
        if (out.status == 503) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return tally;
}

struct MetricsReading {
  double queue_depth = -1;
  double running = -1;
  double rejected = -1;   // kvault_rejected_requests: 503s since start
  double cancelled = -1;  // kvault_cancelled_requests_total: streams whose client went away
};

// An unlabelled series' value in Prometheus text; -1 if it is absent.
double SeriesValue(const std::string& text, const std::string& name) {
  const std::string prefix = "\n" + name + " ";
  const size_t at = text.find(prefix);
  return at == std::string::npos ? -1 : std::strtod(text.c_str() + at + prefix.size(), nullptr);
}

Result<MetricsReading> ReadMetrics(int port) {
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(std::chrono::seconds(5));
  httplib::Result result = http.Get("/metrics");
  if (!result || result->status != 200) return InternalError("bench soak: GET /metrics failed");
  const std::string text = "\n" + result->body;
  return MetricsReading{SeriesValue(text, "kvault_queue_depth"),
                        SeriesValue(text, "kvault_running_requests"),
                        SeriesValue(text, "kvault_rejected_requests"),
                        SeriesValue(text, "kvault_cancelled_requests_total")};
}

// Polls /metrics until nothing runs or waits (or `limit_ms` passes); the last reading,
// and how long it took.
Result<MetricsReading> WaitIdle(int port, double limit_ms, double* waited_ms) {
  const Clock::time_point start = Clock::now();
  while (true) {
    KV_ASSIGN_OR_RETURN(MetricsReading reading, ReadMetrics(port));
    *waited_ms = MsSince(start);
    if ((reading.queue_depth == 0 && reading.running == 0) || *waited_ms >= limit_ms)
      return reading;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

struct FreeProbe {
  int streams = 0;
  int running_before_close = 0;  // must be `streams`, or the probe measured nothing
  double freed_ms = -1;          // from the last socket closed to running back at 0
};

// `streams` endless stateless streams (one per conversation thread, so none waits), each
// dropped after a few events, all at once.
Result<FreeProbe> ProbeDisconnects(int port, const SoakOptions& o) {
  FreeProbe probe;
  probe.streams = o.conversation_threads;
  std::atomic<int> ready{0};
  std::atomic<bool> close{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < probe.streams; ++i) {
    threads.emplace_back([&, i] {
      httplib::Client http("127.0.0.1", port);
      http.set_read_timeout(std::chrono::seconds(o.timeout_seconds));
      const Json body = {
          {"messages",
           Json::array({{{"role", "user"}, {"content", "Probe " + std::to_string(i)}}})},
          {"max_tokens", kEndlessTokens},
          {"ignore_eos", true},
          {"stream", true}};
      SseScan sse;
      http.Post("/v1/chat/completions", httplib::Headers{}, DumpJson(body), "application/json",
                [&](const char* data, size_t length) {
                  sse.Add(data, length);
                  if (sse.events < kEventsBeforeDisconnect) return true;
                  ready.fetch_add(1);
                  const Clock::time_point limit = Clock::now() + std::chrono::seconds(10);
                  while (!close.load() && Clock::now() < limit) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                  }
                  return false;  // httplib closes the connection
                });
    });
  }
  const Clock::time_point limit = Clock::now() + std::chrono::seconds(10);
  while (ready.load() < probe.streams && Clock::now() < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  Result<MetricsReading> before = ReadMetrics(port);
  close = true;
  for (std::thread& thread : threads) thread.join();
  KV_RETURN_IF_ERROR(before.status());
  probe.running_before_close = static_cast<int>(before->running);
  double waited_ms = 0;
  KV_ASSIGN_OR_RETURN(MetricsReading after, WaitIdle(port, 5000, &waited_ms));
  if (after.running == 0) probe.freed_ms = waited_ms;
  return probe;
}

// What the server holds that may rightly grow its memory: the KV blocks of its RAM tier (up
// to the budget), MiB, the radix tree that indexes cached prefixes, and the conversations it
// keeps.
struct Holdings {
  double kv_ram_mib = -1;
  int64_t tree_nodes = -1;
  int64_t conversations = -1;
};

Result<Holdings> ReadHoldings(int port) {
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(std::chrono::seconds(5));
  httplib::Result result = http.Get("/health");
  if (!result || result->status != 200) return InternalError("bench soak: GET /health failed");
  KV_ASSIGN_OR_RETURN(const Json health, ParseJson(result->body));
  const Json& ram = health["kv_cache"]["tiers"]["ram"];
  return Holdings{NumberOr(ram, "bytes", -1) / (1 << 20),
                  static_cast<int64_t>(NumberOr(health["kv_cache"], "tree_nodes", -1)),
                  static_cast<int64_t>(NumberOr(health["manager"], "conversations", -1))};
}

// The server's resident memory, MiB: all of it (VmRSS), and the anonymous part (RssAnon:
// the heap, without the model's mapped file), from /proc/<pid>/status.
struct Rss {
  double total_mib = 0;
  double anon_mib = 0;
};

Result<Rss> ReadRss(pid_t pid) {
  KV_ASSIGN_OR_RETURN(std::string status,
                      ReadFileToString("/proc/" + std::to_string(pid) + "/status"));
  const auto field_mib = [&status](const std::string& name) {
    const size_t at = status.find("\n" + name + ":");
    return at == std::string::npos
               ? -1.0
               : std::strtod(status.c_str() + at + name.size() + 2, nullptr) / 1024.0;  // kB
  };
  const Rss rss{field_mib("VmRSS"), field_mib("RssAnon")};
  if (rss.total_mib < 0) return InternalError("bench soak: no VmRSS for the server");
  return rss;
}

Json TallyJson(const Tally& t) {
  return {{"requests", t.requests},
          {"status_200", t.ok},
          {"status_503", t.rejected},
          {"status_other", t.other},
          {"server_errors", t.server_errors},
          {"disconnects", t.disconnected},
          {"hung", t.hung},
          {"lost", t.lost}};
}

Result<std::unique_ptr<ChildServer>> StartServer(const SoakOptions& o, const BenchDir& scratch) {
  ServerParams params;
  params.model_path = o.model_path;
  params.threads = o.threads;
  params.window = kWindow;
  params.slots = o.conversation_threads;
  params.state_dir = scratch.path();
  params.extra_args = {"--conversation-queue", std::to_string(o.conversation_queue),
                       "--cache-ram-mb", std::to_string(o.cache_ram_mb)};
  params.extra_args.insert(params.extra_args.end(), o.kvault_args.begin(), o.kvault_args.end());
  KV_ASSIGN_OR_RETURN(int port, FreePort());
  return ChildServer::Start(ServerArgv(params, port), port, scratch.log_path(),
                            params.timeout_seconds);
}

// The server between rounds: the disconnect probe, then with nothing left running, its
// gauges and its memory.
struct RoundEnd {
  FreeProbe probe;
  MetricsReading idle;
  double idle_ms = 0;  // from the probe's end until nothing ran or waited
  Rss rss;
  Holdings holdings;
};

Result<RoundEnd> EndRound(const ChildServer& server, const SoakOptions& o) {
  RoundEnd end;
  KV_ASSIGN_OR_RETURN(end.probe, ProbeDisconnects(server.port(), o));
  KV_ASSIGN_OR_RETURN(end.idle, WaitIdle(server.port(), 5000, &end.idle_ms));
  KV_ASSIGN_OR_RETURN(end.rss, ReadRss(server.pid()));
  KV_ASSIGN_OR_RETURN(end.holdings, ReadHoldings(server.port()));
  return end;
}

Json RoundJson(const Tally& tally, const RoundEnd& end) {
  Json row = TallyJson(tally);
  row.update({{"rejection_p99_ms", Percentile(tally.rejection_ms, 99)},
              {"rejection_max_ms", Percentile(tally.rejection_ms, 100)},
              {"rss_mib", end.rss.total_mib},
              {"rss_anon_mib", end.rss.anon_mib},
              {"kv_ram_mib", end.holdings.kv_ram_mib},
              {"tree_nodes", end.holdings.tree_nodes},
              {"conversations", end.holdings.conversations},
              {"probe_running_before_close", end.probe.running_before_close},
              {"probe_freed_ms", end.probe.freed_ms},
              {"idle_ms", end.idle_ms}});
  return row;
}

// RSS growth of the last round over the one before; 0 with one round.
double LastRssGrowth(const std::vector<RoundEnd>& ends) {
  if (ends.size() < 2) return 0;
  const double before = ends[ends.size() - 2].rss.total_mib;
  return Ratio(ends.back().rss.total_mib - before, before);
}

// Pass or fail of each requirement in the header.
Json Requirements(const Tally& total, const std::vector<RoundEnd>& ends) {
  bool threads_freed = true;
  for (const RoundEnd& end : ends) {
    threads_freed = threads_freed && end.probe.running_before_close == end.probe.streams &&
                    end.probe.freed_ms >= 0 && end.probe.freed_ms <= kMaxFreeMs;
  }
  const MetricsReading& last = ends.back().idle;
  return {{"overloaded", total.rejected > 0},  // else the 503 figures say nothing
          {"no_hung", total.hung == 0},
          {"no_lost", total.lost == 0},
          {"only_200_and_503", total.other == 0},
          {"rejections_p99_under_100ms", Percentile(total.rejection_ms, 99) <= kMaxRejectionMs},
          {"disconnects_free_threads", threads_freed},
          {"gauges_zero_at_end", last.queue_depth == 0 && last.running == 0},
          {"rejections_match_server", last.rejected == static_cast<double>(total.rejected)},
          {"rss_leveled_off", LastRssGrowth(ends) < kMaxRssGrowth}};
}

Result<Json> Measure(const SoakOptions& o) {
  std::unique_ptr<BenchDir> scratch = BenchDir::Scratch("soak");  // outlives the server
  KV_ASSIGN_OR_RETURN(std::unique_ptr<ChildServer> server, StartServer(o, *scratch));
  const int n_clients =
      o.clients > 0 ? o.clients : 2 * (o.conversation_threads + o.conversation_queue);
  std::vector<ClientState> states(static_cast<size_t>(n_clients));
  for (int c = 0; c < n_clients; ++c) {
    states[c].client = c;
    states[c].random.seed(o.seed + static_cast<uint32_t>(c));
  }
  KV_ASSIGN_OR_RETURN(const Rss rss_start, ReadRss(server->pid()));
  Tally total;
  std::vector<RoundEnd> ends;
  Json rounds = Json::array();
  for (int round = 0; round < o.rounds; ++round) {
    const Tally tally = RunRound(server->port(), o, states);
    total.Merge(tally);
    KV_ASSIGN_OR_RETURN(RoundEnd end, EndRound(*server, o));
    rounds.push_back(RoundJson(tally, end));
    ends.push_back(std::move(end));
  }
  const Json requirements = Requirements(total, ends);
  Json failed = Json::array();
  for (const auto& [name, ok] : requirements.items()) {
    if (!ok.get<bool>()) failed.push_back(name);
  }
  const RoundEnd& last = ends.back();
  Json report = TallyJson(total);
  report.update(
      {{"rounds", o.rounds},
       {"round_seconds", o.round_seconds},
       {"clients", n_clients},
       {"conversation_threads", o.conversation_threads},
       {"conversation_queue", o.conversation_queue},
       {"by_op", total.by_op},
       {"other_statuses", total.other_statuses},
       {"failures", total.failures},
       {"rejection_p50_ms", Percentile(total.rejection_ms, 50)},
       {"rejection_p99_ms", Percentile(total.rejection_ms, 99)},
       {"rejection_max_ms", Percentile(total.rejection_ms, 100)},
       {"rejections_over_100ms", std::count_if(total.rejection_ms.begin(), total.rejection_ms.end(),
                                               [](double ms) { return ms > kMaxRejectionMs; })},
       {"rss_start_mib", rss_start.total_mib},
       {"rss_anon_start_mib", rss_start.anon_mib},
       {"rss_last_round_growth", LastRssGrowth(ends)},
       {"end_queue_depth", last.idle.queue_depth},
       {"end_running_requests", last.idle.running},
       {"end_idle_ms", last.idle_ms},
       {"server_rejected_requests", last.idle.rejected},
       {"server_cancelled_streams", last.idle.cancelled},
       {"dropped_streams", total.disconnected + o.rounds * o.conversation_threads},
       {"per_round", rounds},
       {"requirements", requirements},
       {"failed", failed},
       {"pass", failed.empty()}});
  return report;
}

long long Int(const Json& r, const char* key) { return r[key].get<long long>(); }

// The clients' counts, round by round.
void PrintTraffic(const Json& r) {
  std::printf(
      "requests %lld: 200 %lld, 503 %lld, other %lld (5xx %lld); disconnects %lld, "
      "hung %lld, lost %lld\n",
      Int(r, "requests"), Int(r, "status_200"), Int(r, "status_503"), Int(r, "status_other"),
      Int(r, "server_errors"), Int(r, "disconnects"), Int(r, "hung"), Int(r, "lost"));
  std::printf("by route:");
  for (const auto& [name, n] : r["by_op"].items()) {
    std::printf(" %s %lld", name.c_str(), n.get<long long>());
  }
  std::printf("\n");
  for (const auto& [name, n] : r["other_statuses"].items()) {
    std::printf("  other status: %s x%lld\n", name.c_str(), n.get<long long>());
  }
  for (const Json& f : r["failures"]) std::printf("  lost: %s\n", f.get<std::string>().c_str());
  std::printf("503 latency: p50 %.1f ms, p99 %.1f ms, max %.1f ms; %lld over 100 ms\n\n",
              r["rejection_p50_ms"].get<double>(), r["rejection_p99_ms"].get<double>(),
              r["rejection_max_ms"].get<double>(), Int(r, "rejections_over_100ms"));
  std::printf("round  requests    200    503  other  disc  hung  lost  503 p99 ms  503 max ms\n");
  int i = 1;
  for (const Json& row : r["per_round"]) {
    std::printf("%5d  %8lld  %5lld  %5lld  %5lld  %4lld  %4lld  %4lld  %10.1f  %10.1f\n", i++,
                Int(row, "requests"), Int(row, "status_200"), Int(row, "status_503"),
                Int(row, "status_other"), Int(row, "disconnects"), Int(row, "hung"),
                Int(row, "lost"), row["rejection_p99_ms"].get<double>(),
                row["rejection_max_ms"].get<double>());
  }
}

// The server after each round, and at the end.
void PrintServer(const Json& r) {
  std::printf(
      "\nafter  RSS MiB  anon MiB  KV RAM MiB  tree nodes  conversations  probe running  "
      "freed ms  idle ms\n");
  std::printf("start  %7.1f  %8.1f\n", r["rss_start_mib"].get<double>(),
              r["rss_anon_start_mib"].get<double>());
  int i = 1;
  for (const Json& row : r["per_round"]) {
    std::printf("%5d  %7.1f  %8.1f  %10.1f  %10lld  %13lld  %13lld  %8.1f  %7.1f\n", i++,
                row["rss_mib"].get<double>(), row["rss_anon_mib"].get<double>(),
                row["kv_ram_mib"].get<double>(), Int(row, "tree_nodes"), Int(row, "conversations"),
                Int(row, "probe_running_before_close"), row["probe_freed_ms"].get<double>(),
                row["idle_ms"].get<double>());
  }
  std::printf(
      "(anon: the heap, without the model's mapped file; KV RAM: the block tier's; probe "
      "running: of the %lld dropped streams, those still generating; freed: ms from the drop "
      "until none ran; idle: ms until nothing ran or waited)\n",
      Int(r, "conversation_threads"));
  std::printf(
      "last round RSS growth %.1f%%; at the end: queue_depth %g, running_requests %g "
      "after %.0f ms; server counted %g 503s\n",
      100 * r["rss_last_round_growth"].get<double>(), r["end_queue_depth"].get<double>(),
      r["end_running_requests"].get<double>(), r["end_idle_ms"].get<double>(),
      r["server_rejected_requests"].get<double>());
  // Informative: a stream the server finished before it noticed the client gone is not
  // counted as cancelled.
  std::printf("streams dropped by clients (probes included) %lld, cancelled by the server %g\n",
              Int(r, "dropped_streams"), r["server_cancelled_streams"].get<double>());
}

void PrintTable(const Json& r) {
  std::printf(
      "%lld rounds of %lld s, %lld clients against %lld conversation threads + %lld queued\n",
      Int(r, "rounds"), Int(r, "round_seconds"), Int(r, "clients"), Int(r, "conversation_threads"),
      Int(r, "conversation_queue"));
  PrintTraffic(r);
  PrintServer(r);
  for (const auto& [name, ok] : r["requirements"].items()) {
    std::printf("  %-26s %s\n", name.c_str(), ok.get<bool>() ? "pass" : "FAIL");
  }
  std::printf("%s\n", r["pass"].get<bool>() ? "PASS" : "FAIL");
}

}  // namespace

int RunBenchSoak(int argc, char** argv) {
  CLI::App app(
      "Sustained mixed traffic above threads + queue: 200/503/other, 503 latency, hung and "
      "lost requests, threads freed by disconnects, gauges at the end, RSS per round.",
      "bench soak");
  SoakOptions o;
  AddModelOption(app, o);
  AddBoundedOption(app, "--rounds", o.rounds, "rounds of traffic (RSS is read after each)", 1,
                   1000);
  AddBoundedOption(app, "--round-seconds", o.round_seconds, "seconds of traffic per round", 1,
                   3600);
  AddBoundedOption(app, "--conversation-threads", o.conversation_threads,
                   "the server's --conversation-threads", 1, 64);
  AddBoundedOption(app, "--conversation-queue", o.conversation_queue,
                   "the server's --conversation-queue", 0, 1000);
  AddBoundedOption(app, "--clients", o.clients,
                   "client threads; 0 = twice conversation threads + queue", 0, 1000);
  AddBoundedOption(app, "--max-tokens", o.max_tokens, "tokens per reply", 1, 256);
  AddBoundedOption(app, "--timeout-seconds", o.timeout_seconds,
                   "a request unanswered for this long is hung", 1, 600);
  AddBoundedOption(app, "--cache-ram-mb", o.cache_ram_mb,
                   "the server's --cache-ram-mb: small, so that the KV cache fills it early", 1,
                   1 << 20);
  app.add_option("--seed", o.seed, "seed of the clients' choices")->capture_default_str();
  AddThreadsOption(app, o);
  AddKvaultArgsOption(app, o);
  Json report;
  const int status = RunDriver(
      app, o, argc, argv,
      [&]() -> Result<Json> {
        KV_ASSIGN_OR_RETURN(report, Measure(o));
        return report;
      },
      PrintTable);
  if (status != 0 || report.is_null() || report["pass"].get<bool>()) return status;
  std::fflush(stdout);  // the table before the error line, when both go to one file
  return ReportError(
      FailedPreconditionError("bench soak: requirements failed: " + DumpJson(report["failed"])));
}

}  // namespace kvault::cli
