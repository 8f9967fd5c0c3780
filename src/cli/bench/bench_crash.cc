// kvault bench crash: does an acknowledged turn survive kill -9? Each trial starts the real
// `kvault serve` on the same private folders (the journal, the blocks), checks what the last
// trial's clients recorded, drives C conversations at once (streamed and not, clients that
// resend the whole history and clients that send only the new message), and kills the
// server with SIGKILL at a random moment.
//
// "Acknowledged" is the README's durability guarantee: a turn whose response the client
// received in full (the non-streamed body, or the streamed finish chunk and [DONE]). Each
// check reads GET /v1/conversations/{id}/history and requires every acknowledged user
// message and reply, in order, with their exact text (others may sit between them: a turn
// the server stored whose response the kill cut off). Then the first turn after the restart
// must succeed, and its prompt's KV is counted as restored or recomputed. Every fifth trial
// also kills a server while it starts (journal replay, block recovery) before the next start.
//
// A saver thread saves sessions of the conversations all along (each under a new name); a
// save acknowledged with 200 must come back after the restart exactly (turns, tokens,
// created). Where the kill falls: trials cycle through three timings, a random moment; within
// 10 ms after a session save was sent (inside its write, or just before or after it); and
// within 20 ms after a turn's response (its KV checkpoint is then being written to the disk
// tier). A torn block file must be found and dropped at the next start (counted as corrupt),
// never served.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include <httplib.h>

#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct CrashOptions : BenchOptions {
  int trials = 10;
  int conversations = 4;
  int max_tokens = 12;
  double max_kill_seconds = 3.0;  // the kill comes uniformly in [0.2, max] s into the load
  uint32_t seed = 1;
};

struct Turn {
  std::string user;
  std::string assistant;
};

// What one client knows of its conversation: the turns it got a full response for.
struct ClientRecord {
  std::string id;
  bool resends_history = false;  // whole history each time, or only the new message
  bool streams = false;
  std::vector<Turn> acknowledged;
};

struct TrialCounts {
  int64_t checked = 0;  // acknowledged turns compared with the server's history
  int64_t lost = 0;
  int64_t next_turn_failures = 0;
  int64_t next_turns = 0;           // first turns after a restart
  int64_t next_turns_measured = 0;  // of those, non-streamed (they report their KV source)
  int64_t next_turn_restored = 0;   // of those, KV restored from RAM or disk
  int64_t sessions_checked = 0;     // acknowledged saves read back after a restart
  int64_t sessions_lost = 0;
  int64_t corrupt_blocks = 0;  // torn or corrupt block files found at starts
};

// A session save the server acknowledged, with what it said it saved.
struct SavedSession {
  std::string name;
  Json session;
};

enum class KillTiming { kRandom, kDuringSave, kDuringBlockWrite };

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

Json ChatBody(const ClientRecord& client, const std::string& message, int max_tokens) {
  Json messages = Json::array();
  messages.push_back({{"role", "system"}, {"content", "You answer briefly."}});
  if (client.resends_history) {
    for (const Turn& turn : client.acknowledged) {
      messages.push_back({{"role", "user"}, {"content", turn.user}});
      messages.push_back({{"role", "assistant"}, {"content", turn.assistant}});
    }
  }
  messages.push_back({{"role", "user"}, {"content", message}});
  return {{"conversation_id", client.id},
          {"messages", messages},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}

// One turn; the reply text if the response arrived in full, and where its prompt's KV came
// from (non-streamed only).
struct TurnOutcome {
  bool acknowledged = false;
  std::string reply;
  std::string cache_source;
};

TurnOutcome SendTurn(int port, const ClientRecord& client, const std::string& message,
                     int max_tokens) {
  TurnOutcome outcome;
  Json body = ChatBody(client, message, max_tokens);
  if (client.streams) {
    const StreamTiming timing = StreamChat(port, std::move(body), Clock::now(), /*want_text=*/true);
    outcome.acknowledged = timing.ok && timing.done;
    outcome.reply = timing.text;
    return outcome;
  }
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(std::chrono::seconds(60));
  httplib::Result result = http.Post("/v1/chat/completions", DumpJson(body), "application/json");
  if (!result || result->status != 200) return outcome;
  Result<Json> json = ParseJson(result->body);
  if (!json.ok() || !json->contains("choices")) return outcome;
  outcome.acknowledged = true;
  outcome.reply = (*json)["choices"][0]["message"]["content"].get<std::string>();
  outcome.cache_source = (*json)["kvault"].value("cache_source", "");
  return outcome;
}

// The acknowledged save must be there as it was acknowledged.
void CheckSession(const BenchServer& server, const SavedSession& saved, TrialCounts* counts) {
  ++counts->sessions_checked;
  Result<Json> got = server.GetJson("/v1/sessions/" + saved.name);
  const bool same = got.ok() && (*got)["turns"] == saved.session["turns"] &&
                    (*got)["tokens"] == saved.session["tokens"] &&
                    (*got)["created"] == saved.session["created"];
  if (!same) {
    ++counts->sessions_lost;
    KV_LOG(kWarning) << "bench crash: session " << saved.name << " acknowledged as "
                     << saved.session.dump() << " reads back as "
                     << (got.ok() ? got->dump() : got.status().ToString());
  }
}

// Every acknowledged turn of `client`, in order, in the server's history.
void Check(const BenchServer& server, const ClientRecord& client, TrialCounts* counts) {
  if (client.acknowledged.empty()) return;
  counts->checked += static_cast<int64_t>(client.acknowledged.size());
  Result<Json> history = server.GetJson("/v1/conversations/" + client.id + "/history");
  if (!history.ok()) {
    counts->lost += static_cast<int64_t>(client.acknowledged.size());
    return;
  }
  const Json& turns = (*history)["turns"];
  size_t at = 0;
  int64_t found = 0;
  for (const Turn& turn : client.acknowledged) {
    // The user message, then its reply right after it.
    while (at + 1 < turns.size() &&
           !(turns[at]["content"] == turn.user && turns[at + 1]["content"] == turn.assistant)) {
      ++at;
    }
    if (at + 1 >= turns.size()) {
      KV_LOG(kWarning) << "bench crash: " << client.id << " lost \"" << turn.user << "\" (reply \""
                       << turn.assistant << "\"); the server holds " << turns.size() << " turns";
      break;
    }
    ++found;
    at += 2;
  }
  counts->lost += static_cast<int64_t>(client.acknowledged.size()) - found;
}

Result<Json> Measure(const CrashOptions& o) {
  // Clients write to servers that are killed under them: a write to the dead socket must
  // fail, not end the benchmark.
  std::signal(SIGPIPE, SIG_IGN);
  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchDir> state, BenchDir::Create(""));
  std::vector<ClientRecord> clients(static_cast<size_t>(o.conversations));
  for (size_t i = 0; i < clients.size(); ++i) {
    clients[i].id = "crash-" + std::to_string(i);
    clients[i].resends_history = i % 2 == 0;
    clients[i].streams = (i / 2) % 2 == 1;
  }
  std::mt19937 random(o.seed);
  std::vector<double> restart_s;
  TrialCounts counts;
  int start_failures = 0;
  int64_t turns_sent = 0;
  ServerParams params;
  params.model_path = o.model_path;
  params.threads = o.threads;
  params.window = 1024;
  params.slots = 2;
  params.state_dir = state->path();
  params.log_path = state->path() + "/server.log";
  params.extra_args = o.kvault_args;
  int startup_kills = 0;
  std::vector<SavedSession> saved_sessions;
  int timed_kills[3] = {0, 0, 0};  // by KillTiming: the kill came as planned
  // trials + 1 starts: the last one only checks what the last trial's clients recorded.
  for (int trial = 0; trial <= o.trials; ++trial) {
    if (trial % 5 == 4) {
      // A kill during start-up (journal replay, block recovery): the next start must
      // recover from it like from any other.
      KV_ASSIGN_OR_RETURN(int port, FreePort());
      Result<std::unique_ptr<ChildServer>> starting =
          ChildServer::Spawn(ServerArgv(params, port), port, params.log_path);
      if (starting.ok()) {
        std::uniform_real_distribution<double> when(0.0, 0.4);
        std::this_thread::sleep_for(std::chrono::duration<double>(when(random)));
        (*starting)->Kill();
        ++startup_kills;
      }
    }
    const Clock::time_point started = Clock::now();
    Result<std::unique_ptr<BenchServer>> server = BenchServer::Start(params);
    if (!server.ok()) {
      ++start_failures;
      KV_LOG(kWarning) << "bench crash: start " << trial
                       << " failed: " << server.status().ToString();
      continue;
    }
    if (trial > 0) restart_s.push_back(Seconds(Clock::now() - started));
    for (const ClientRecord& client : clients) Check(**server, client, &counts);
    for (const SavedSession& saved : saved_sessions) CheckSession(**server, saved, &counts);
    if (Result<Json> health = (*server)->GetJson("/health"); health.ok()) {
      counts.corrupt_blocks += (*health)["kv_cache"].value("corrupt_blocks", int64_t{0});
    }
    if (trial == o.trials) break;
    // The clients, until the kill.
    std::atomic<bool> killed{false};
    // Events the timed kills wait for: a save sent, a turn's response received.
    std::atomic<int64_t> saves_sent{0};
    std::atomic<int64_t> turns_done{0};
    std::mutex mu;
    std::vector<std::thread> threads;
    for (size_t c = 0; c < clients.size(); ++c) {
      threads.emplace_back([&, c] {
        ClientRecord& client = clients[c];
        bool first = true;
        for (int n = 0; !killed.load(); ++n) {
          const std::string message = "Trial " + std::to_string(trial) + ", message " +
                                      std::to_string(n) + " of " + client.id + ": tell me more.";
          const TurnOutcome outcome = SendTurn((*server)->port(), client, message, o.max_tokens);
          std::lock_guard<std::mutex> lock(mu);
          ++turns_sent;
          if (first && trial > 0 && !killed.load()) {  // the first turn after a restart
            ++counts.next_turns;
            if (!outcome.acknowledged) ++counts.next_turn_failures;
            if (outcome.acknowledged && !client.streams) {
              ++counts.next_turns_measured;
              if (outcome.cache_source == "ram" || outcome.cache_source == "disk") {
                ++counts.next_turn_restored;
              }
            }
          }
          first = false;
          if (!outcome.acknowledged) break;  // the server is gone (or refused: counted above)
          client.acknowledged.push_back({message, outcome.reply});
          ++turns_done;
        }
      });
    }
    threads.emplace_back([&] {  // the saver
      // At most 10 saves a trial, 50 ms apart: each pins its blocks for good.
      for (int n = 0; n < 10 && !killed.load(); ++n) {
        std::string id;
        {
          std::lock_guard<std::mutex> lock(mu);
          const ClientRecord& client = clients[static_cast<size_t>(n) % clients.size()];
          if (!client.acknowledged.empty()) id = client.id;
        }
        if (id.empty()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        const std::string name = "crash-t" + std::to_string(trial) + "-" + std::to_string(n);
        httplib::Client http("127.0.0.1", (*server)->port());
        http.set_read_timeout(std::chrono::seconds(60));
        ++saves_sent;
        httplib::Result result =
            http.Post("/v1/sessions/" + name + "/save", DumpJson(Json{{"conversation_id", id}}),
                      "application/json");
        if (!result || result->status != 200) break;  // the server is gone
        Result<Json> session = ParseJson(result->body);
        if (!session.ok()) break;
        {
          std::lock_guard<std::mutex> lock(mu);
          saved_sessions.push_back({name, std::move(session).value()});
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    const auto timing = static_cast<KillTiming>(trial % 3);
    std::uniform_real_distribution<double> when(0.2, std::max(0.3, o.max_kill_seconds));
    std::this_thread::sleep_for(std::chrono::duration<double>(when(random)));
    if (timing != KillTiming::kRandom) {
      // Wait for the next event of the kind, then kill a few milliseconds into it.
      std::atomic<int64_t>& events = timing == KillTiming::kDuringSave ? saves_sent : turns_done;
      const int64_t seen = events.load();
      const Clock::time_point give_up = Clock::now() + std::chrono::seconds(10);
      while (events.load() == seen && Clock::now() < give_up) std::this_thread::yield();
      if (events.load() != seen) {
        ++timed_kills[static_cast<int>(timing)];
        std::uniform_real_distribution<double> delay(
            0.0, timing == KillTiming::kDuringSave ? 0.010 : 0.020);
        std::this_thread::sleep_for(std::chrono::duration<double>(delay(random)));
      }
    } else {
      ++timed_kills[0];
    }
    killed = true;
    (*server)->Kill();
    for (std::thread& thread : threads) thread.join();
    server->reset();
  }
  int64_t acknowledged = 0;
  for (const ClientRecord& client : clients) {
    acknowledged += static_cast<int64_t>(client.acknowledged.size());
  }
  return Json{{"trials", o.trials},
              {"conversations", o.conversations},
              {"turns_sent", turns_sent},
              {"acknowledged_turns", acknowledged},
              {"acknowledged_turns_checked", counts.checked},
              {"turns_lost", counts.lost},
              {"start_failures", start_failures},
              {"startup_kills", startup_kills},
              {"next_turns", counts.next_turns},
              {"next_turn_failures", counts.next_turn_failures},
              {"next_turns_kv_measured", counts.next_turns_measured},
              {"next_turns_kv_restored", counts.next_turn_restored},
              {"sessions_acknowledged", static_cast<int64_t>(saved_sessions.size())},
              {"sessions_checked", counts.sessions_checked},
              {"sessions_lost", counts.sessions_lost},
              {"corrupt_blocks_found", counts.corrupt_blocks},
              {"kills_random", timed_kills[0]},
              {"kills_in_session_save", timed_kills[1]},
              {"kills_in_block_write", timed_kills[2]},
              {"restart_p50_s", Percentile(restart_s, 50)},
              {"restart_max_s", Percentile(restart_s, 100)}};
}

void PrintTable(const Json& r) {
  std::printf("kills during start-up: %lld\n", r["startup_kills"].get<long long>());
  std::printf("%lld trials, %lld conversations: %lld turns sent, %lld acknowledged\n",
              r["trials"].get<long long>(), r["conversations"].get<long long>(),
              r["turns_sent"].get<long long>(), r["acknowledged_turns"].get<long long>());
  std::printf("acknowledged turns checked after restarts: %lld, lost: %lld\n",
              r["acknowledged_turns_checked"].get<long long>(), r["turns_lost"].get<long long>());
  std::printf(
      "start failures: %lld; first turns after a restart: %lld (%lld failed); KV "
      "restored for %lld of the %lld non-streamed ones\n",
      r["start_failures"].get<long long>(), r["next_turns"].get<long long>(),
      r["next_turn_failures"].get<long long>(), r["next_turns_kv_restored"].get<long long>(),
      r["next_turns_kv_measured"].get<long long>());
  std::printf(
      "kills at a random moment: %lld, within 10 ms of a session save: %lld, within "
      "20 ms of a turn's checkpoint: %lld\n",
      r["kills_random"].get<long long>(), r["kills_in_session_save"].get<long long>(),
      r["kills_in_block_write"].get<long long>());
  std::printf(
      "sessions acknowledged: %lld; checked after restarts: %lld, lost: %lld; corrupt "
      "block files found and dropped at starts: %lld\n",
      r["sessions_acknowledged"].get<long long>(), r["sessions_checked"].get<long long>(),
      r["sessions_lost"].get<long long>(), r["corrupt_blocks_found"].get<long long>());
  std::printf("restart to healthy: p50 %.3f s, max %.3f s\n", r["restart_p50_s"].get<double>(),
              r["restart_max_s"].get<double>());
}

}  // namespace

int RunBenchCrash(int argc, char** argv) {
  CLI::App app(
      "kill -9 under concurrent load, restart on the same folders: acknowledged turns "
      "lost, start failures, restart time.",
      "bench crash");
  CrashOptions o;
  AddModelOption(app, o);
  AddBoundedOption(app, "--trials", o.trials, "kill -9 trials", 1, 10000);
  AddBoundedOption(app, "--conversations", o.conversations, "concurrent conversations", 1, 64);
  AddBoundedOption(app, "--max-tokens", o.max_tokens, "tokens per reply", 1, 512);
  AddBoundedOption(app, "--max-kill-seconds", o.max_kill_seconds,
                   "the kill comes at a uniformly random time in [0.2, this] s of load", 0.3,
                   600.0);
  app.add_option("--seed", o.seed, "seed of the kill times")->capture_default_str();
  AddThreadsOption(app, o);
  AddKvaultArgsOption(app, o);
  return RunDriver(
      app, o, argc, argv, [&] { return Measure(o); }, PrintTable);
}

}  // namespace kvault::cli
