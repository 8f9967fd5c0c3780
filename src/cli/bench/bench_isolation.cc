// kvault bench isolation: does an API key ever see or change what another key stored, under
// concurrent load? README "Isolation" promises that with --api-key each key is a scope of its
// own: conversations, their history and search, named sessions, knowledge facts, the cache
// tree and cached prefixes. A single request that crosses scopes breaks that promise for
// every tenant, and the races that would let one through (two keys writing the same names at
// the same moment) only show under load, so this benchmark makes them as likely as it can:
//
//   workload  --conversations clients at once, client i under key i % --keys. Every key uses
//             the same conversation ids ("conv-0", "conv-1", ...), the same session names,
//             the same knowledge topics and fact keys, the same system prompt. Each client
//             stores a fact, sends --turns chat turns (streamed and not, asking the question
//             its fact answers, so knowledge recall runs), appends a turn pair without
//             generating, and saves its session. One more client per key makes a "scratch"
//             conversation and session of that name; even keys delete theirs, odd keys
//             keep theirs, which must survive.
//   planted   every text a key sends carries a word made of that key's random salt, so any
//             response holding another key's salt is a leak, whatever field carries it.
//   checks    then, with each key: the conversation list, every history (exact texts, in
//             order), search (own words found, other keys' words not), sessions (list, info,
//             and each loaded back into a conversation, exact), knowledge (topics, facts,
//             search), the scratch deletions, the cache tree, and the server-wide routes;
//             before them, every route with a missing, wrong or near-miss key must be 401 and
//             change nothing.
//   prefixes  key A sends a long unique prompt, then again (its own cache: fast), then key B
//             sends it and a never-seen prompt of the same length (fresh): B's cached_tokens
//             must not exceed what the fresh prompt gets, and B's time to first token must
//             look like the fresh prompt's, not A's repeat's (the timing side channel vLLM's
//             cache_salt closes). Medians over --repetitions. The same for a kept
//             conversation of the same id under A and B (cached tokens only).
//
// Every check is counted by category; a failed one is a violation. The command exits non-zero
// when there is any, after printing the report.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <tuple>

#include "cli/bench/bench_common.h"
#include "cli/bench/bench_harness.h"
#include "cli/cli_util.h"
#include <httplib.h>

#include "kvault/base/file.h"
#include "kvault/base/log.h"
#include "kvault/base/mutex.h"
#include "kvault/base/status_macros.h"

namespace kvault::cli {
namespace {

struct IsolationOptions : BenchOptions {
  int conversations = 64;
  int keys = 4;
  int turns = 3;
  int max_tokens = 8;
  int prefix_tokens = 3000;  // about; the report gives the measured count
  int repetitions = 5;
};

constexpr int kTopics = 4;  // knowledge topics, the same names under every key
constexpr size_t kMaxExamples = 20;
// Cached tokens any never-seen prompt may get from its own key's cache: the chat template's
// opening and a chance agreement of the first tokens after it. Reuse of another key's prompt
// would show hundreds (a block is 256 tokens).
constexpr double kTemplateSlackTokens = 16;
// The preloaded prefix every key must reuse (about 600 tokens): at least one whole block.
constexpr double kMinSharedTokens = 256;
const char* const kSystemPrompt = "You keep notes about harbours.";  // every key's

double SecondsSince(BenchClock::time_point start) {
  return std::chrono::duration<double>(BenchClock::now() - start).count();
}

std::string RandomHex(std::mt19937_64& rng, int digits) {
  static const char kHex[] = "0123456789abcdef";
  std::string text;
  for (int i = 0; i < digits; ++i) text += kHex[rng() % 16];
  return text;
}

// Field access that never throws (base/json.h): null when absent or of another shape.
const Json& At(const Json& object, const char* key) {
  static const Json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}
const Json& First(const Json& array) {
  static const Json kNull;
  return array.is_array() && !array.empty() ? array[0] : kNull;
}
std::string Str(const Json& value) {
  return value.is_string() ? value.get_ref<const std::string&>() : std::string();
}
// long long: what printf's %lld takes.
long long Int(const Json& value) { return value.is_number_integer() ? value.get<long long>() : -1; }

// What the run plants: per key a random salt that starts every word the key sends, so a text
// shows key k's data exactly when it holds salts[k]. Fixed-length salts with the key's number
// between "pk" and "x" cannot contain one another.
class Plants {
 public:
  Plants(int keys, std::mt19937_64& rng) {
    for (int k = 0; k < keys; ++k) {
      salts_.push_back("pk" + std::to_string(k) + "x" + RandomHex(rng, 8));
    }
  }
  // One word FTS5 and the tokenizer keep whole: letters and digits only.
  std::string Word(int key, int index, const std::string& what) const {
    return salts_[key] + "c" + std::to_string(index) + what;
  }
  // A key other than `key` (-1: any key) whose salt `text` holds; -1 if none.
  int Foreign(std::string_view text, int key) const {
    for (size_t k = 0; k < salts_.size(); ++k) {
      if (static_cast<int>(k) != key && text.find(salts_[k]) != std::string_view::npos) {
        return static_cast<int>(k);
      }
    }
    return -1;
  }

 private:
  std::vector<std::string> salts_;
};

// Checks and violations by category, and the first violations' descriptions.
class Tally {
 public:
  void Check(const std::string& category, bool ok, const std::string& what) {
    MutexLock lock(&mu_);
    auto& [checks, violations] = counts_[category];
    ++checks;
    if (ok) return;
    ++violations;
    if (examples_.size() >= kMaxExamples) return;
    examples_.push_back(category + ": " + what);
    KV_LOG(kWarning) << "bench isolation: violation (" << category << "): " << what;
  }
  Json ToJson() {
    MutexLock lock(&mu_);
    Json categories = Json::object();
    int64_t checks = 0, violations = 0;
    for (const auto& [name, counts] : counts_) {
      categories[name] = {{"checks", counts.first}, {"violations", counts.second}};
      checks += counts.first;
      violations += counts.second;
    }
    return {{"checks", checks},
            {"violations", violations},
            {"categories", categories},
            {"violation_examples", examples_}};
  }

 private:
  Mutex mu_;
  std::map<std::string, std::pair<int64_t, int64_t>> counts_ KV_GUARDED_BY(mu_);
  std::vector<std::string> examples_ KV_GUARDED_BY(mu_);
};

struct Reply {
  int status = 0;  // 0: no response
  std::string body;
  Json json;  // null unless the body is JSON
};

// A chat response, streamed or not, reduced to what the checks read.
struct ChatReply {
  int status = 0;
  std::string text;
  Json usage;
  Json kvault;                // cache_source, history, prompt
  double first_token_s = -1;  // streamed: from sending to the first event after the role's
  bool done = false;          // the whole response arrived
};

// The HTTP side; `key` "" sends no Authorization header. Counts every request it sends.
class Api {
 public:
  explicit Api(int port) : port_(port) {}

  Reply Send(const std::string& method, const std::string& path, const std::string& key,
             const Json& body = Json::object()) const {
    httplib::Client client = Client();
    const httplib::Headers headers = Headers(key);
    httplib::Result result = method == "GET" ? client.Get(path, headers)
                             : method == "DELETE"
                                 ? client.Delete(path, headers)
                                 : client.Post(path, headers, DumpJson(body), "application/json");
    Reply reply;
    if (!result) return reply;
    reply.status = result->status;
    reply.body = result->body;
    reply.json = ParseJson(reply.body).value_or(Json());
    return reply;
  }
  Reply Get(const std::string& key, const std::string& path) const {
    return Send("GET", path, key);
  }
  Reply Post(const std::string& key, const std::string& path, const Json& body) const {
    return Send("POST", path, key, body);
  }

  ChatReply Chat(const std::string& key, Json body, bool stream) const {
    ChatReply reply;
    if (!stream) {
      const Reply r = Post(key, "/v1/chat/completions", body);
      reply.status = r.status;
      reply.text = Str(At(At(First(At(r.json, "choices")), "message"), "content"));
      reply.usage = At(r.json, "usage");
      reply.kvault = At(r.json, "kvault");
      reply.done = r.status == 200 && At(r.json, "choices").is_array();
      return reply;
    }
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    httplib::Client client = Client();
    std::string buffer;
    const BenchClock::time_point start = BenchClock::now();
    httplib::Result result =
        client.Post("/v1/chat/completions", Headers(key), DumpJson(body), "application/json",
                    [&](const char* data, size_t length) {
                      buffer.append(data, length);
                      for (size_t end; (end = buffer.find("\n\n")) != std::string::npos;
                           buffer.erase(0, end + 2)) {
                        OnEvent(std::string_view(buffer).substr(0, end), start, &reply);
                      }
                      return true;
                    });
    if (result) reply.status = result->status;
    if (reply.status != 200) reply.done = false;
    return reply;
  }

  int port() const { return port_; }
  int64_t requests() const { return requests_.load(); }

 private:
  httplib::Client Client() const {
    ++requests_;
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(std::chrono::seconds(600));
    return client;
  }
  static httplib::Headers Headers(const std::string& key) {
    if (key.empty()) return {};
    return {{"Authorization", "Bearer " + key}};
  }
  static void OnEvent(std::string_view event, BenchClock::time_point start, ChatReply* reply) {
    if (event.substr(0, 6) != "data: ") return;
    event.remove_prefix(6);
    if (event == "[DONE]") {
      reply->done = At(reply->usage, "prompt_tokens").is_number();
      return;
    }
    Result<Json> chunk = ParseJson(event);
    if (!chunk.ok()) return;
    const Json& choice = First(At(*chunk, "choices"));
    const std::string content = Str(At(At(choice, "delta"), "content"));
    const bool usage = At(*chunk, "usage").is_object();
    // The role chunk is sent before the prompt is processed; the next one after it.
    if (reply->first_token_s < 0 && (!content.empty() || At(choice, "finish_reason").is_string() ||
                                     usage || At(*chunk, "error").is_object())) {
      reply->first_token_s = SecondsSince(start);
    }
    reply->text += content;
    if (usage) {
      reply->usage = At(*chunk, "usage");
      reply->kvault = At(*chunk, "kvault");
    }
  }

  const int port_;
  mutable std::atomic<int64_t> requests_{0};
};

struct StoredTurn {
  std::string role;
  std::string content;
};

// One conversation as its client knows it: exactly what the server must hold for it.
struct Conversation {
  int key = 0;
  int index = 0;  // within its key
  std::string id;
  std::vector<StoredTurn> turns;   // acknowledged, in order (the system prompt once)
  std::vector<std::string> words;  // planted in its turns, in order
  std::string topic;               // of its fact
  std::string fact_key;
  std::string fact_value;
  std::string fact_word;
  std::string session;
};

std::string ConversationId(int index) { return "conv-" + std::to_string(index); }

// Per key: the scratch conversation and its session, which even keys delete and odd keys
// keep (under the same names, so a delete that crossed keys would show in an odd key's).
struct Scratch {
  bool kept = false;
  std::vector<StoredTurn> turns;
};

// What every phase shares.
struct Run {
  const IsolationOptions& o;
  Api api;
  Plants plants;
  std::vector<std::string> keys;
  Tally tally;
  std::atomic<int64_t> prompts_with_own_fact{0};  // knowledge recall did run
  std::atomic<int64_t> own_words_in_tree{0};
};

std::string KeyName(int key) { return key < 0 ? "a keyless check" : "key " + std::to_string(key); }

// A check that `text` holds no other key's planted word.
void CheckClean(Run& run, const std::string& category, int key, std::string_view text,
                const std::string& what) {
  const int foreign = run.plants.Foreign(text, key);
  run.tally.Check(category, foreign < 0,
                  KeyName(key) + ": " + what + " holds a word of " + KeyName(foreign));
}

// What is wrong with a history response, given the turns it must hold; "" if nothing.
std::string HistoryDifference(const Reply& reply, const std::vector<StoredTurn>& expected) {
  if (reply.status != 200) return "status " + std::to_string(reply.status);
  const Json& turns = At(reply.json, "turns");
  if (!turns.is_array()) return "no turns";
  if (turns.size() != expected.size()) {
    return std::to_string(turns.size()) + " turns, " + std::to_string(expected.size()) +
           " expected";
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    if (Str(At(turns[i], "role")) != expected[i].role ||
        Str(At(turns[i], "content")) != expected[i].content) {
      return "turn " + std::to_string(i) + " is \"" + Str(At(turns[i], "content")) + "\", not \"" +
             expected[i].content + "\"";
    }
  }
  if (!At(reply.json, "unanswered_turn").is_null()) return "an unanswered turn";
  if (!At(reply.json, "branches").empty()) return "archived branches";
  return "";
}

void CheckHistory(Run& run, const std::string& category, int key, const std::string& id,
                  const std::vector<StoredTurn>& expected) {
  const Reply reply = run.api.Get(run.keys[key], "/v1/conversations/" + id + "/history");
  CheckClean(run, category, key, reply.body, id + "'s history");
  const std::string difference = HistoryDifference(reply, expected);
  run.tally.Check(category, difference.empty(), KeyName(key) + ": " + id + ": " + difference);
}

Json ChatBody(const std::string& id, const std::string& message, int max_tokens) {
  return {{"conversation_id", id},
          {"messages",
           {{{"role", "system"}, {"content", kSystemPrompt}},
            {{"role", "user"}, {"content", message}}}},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"ignore_eos", true},
          {"return_prompt", true}};
}

// One chat turn of a kept conversation: must succeed, append, and show only `key`'s data in
// its prompt (history, recalled chunks and facts) and reply. Returns the prompt if the turn
// was stored (then in `turns`).
std::optional<std::string> SendTurn(Run& run, int key, const std::string& id,
                                    const std::string& message, bool stream,
                                    std::vector<StoredTurn>* turns) {
  const ChatReply reply =
      run.api.Chat(run.keys[key], ChatBody(id, message, run.o.max_tokens), stream);
  const std::string what = KeyName(key) + ": chat turn of " + id;
  run.tally.Check("workload", reply.status == 200 && reply.done,
                  what + " failed (" + std::to_string(reply.status) + ")");
  if (reply.status != 200 || !reply.done) return std::nullopt;
  std::string prompt = Str(At(reply.kvault, "prompt"));
  CheckClean(run, "prompts", key, prompt + reply.text, "the prompt or reply of a turn of " + id);
  const std::string action = Str(At(At(reply.kvault, "history"), "action"));
  run.tally.Check("history_actions", action == "appended", what + " was \"" + action + "\"");
  if (turns->empty()) turns->push_back({"system", kSystemPrompt});
  turns->push_back({"user", message});
  turns->push_back({"assistant", reply.text});
  return prompt;
}

// One client: its fact, its turns, a turn pair appended without generating, its session.
void RunConversation(Run& run, Conversation* c) {
  const std::string& key = run.keys[c->key];
  const std::string who = KeyName(c->key) + ": " + c->id;
  // The fact first, so that the turns' knowledge recall finds it (and would find every other
  // key's, of the same topic and key, were facts not scoped).
  const Reply stored = run.api.Post(key, "/v1/knowledge/" + c->topic,
                                    {{"key", c->fact_key}, {"value", c->fact_value}});
  run.tally.Check("workload", stored.status == 200, who + ": storing its fact failed");
  for (int t = 0; t < run.o.turns; ++t) {
    const std::string word = run.plants.Word(c->key, c->index, "t" + std::to_string(t));
    const std::string message = "Turn " + std::to_string(t) + " of " + c->id + ": remember " +
                                word + ". What is the harbour code?";
    const std::optional<std::string> prompt =
        SendTurn(run, c->key, c->id, message, (c->index + t) % 2 == 1, &c->turns);
    if (!prompt) return;
    c->words.push_back(word);
    if (prompt->find(c->fact_word) != std::string::npos) ++run.prompts_with_own_fact;
  }
  const std::string note = run.plants.Word(c->key, c->index, "a");
  const Json pair = {{{"role", "user"}, {"content", "Appended note: " + note + "."}},
                     {{"role", "assistant"}, {"content", "Noted: " + note + "."}}};
  const Reply appended = run.api.Post(key, "/v1/conversations/append",
                                      {{"conversation_id", c->id}, {"messages", pair}});
  run.tally.Check("workload", appended.status == 200, who + ": append failed");
  if (appended.status != 200) return;
  run.tally.Check("history_actions", Int(At(appended.json, "new_turns")) == 2,
                  who + ": append stored " + DumpJson(At(appended.json, "history")));
  for (const Json& turn : pair) {
    c->turns.push_back({Str(At(turn, "role")), Str(At(turn, "content"))});
  }
  c->words.push_back(note);
  // The same name under every key: another key's session of that name is not this key's to
  // replace.
  const Reply saved =
      run.api.Post(key, "/v1/sessions/" + c->session + "/save", {{"conversation_id", c->id}});
  run.tally.Check("workload", saved.status == 200, who + ": saving its session failed");
  run.tally.Check("sessions", saved.status != 200 || At(saved.json, "replaced_as").is_null(),
                  who + ": its first save of " + c->session + " replaced " +
                      DumpJson(At(saved.json, "replaced_as")));
}

// The scratch conversation and session of `key`; even keys then delete both.
void RunScratch(Run& run, int key, Scratch* scratch) {
  const std::string message = "Scratch notes: " + run.plants.Word(key, 0, "s") + ".";
  if (!SendTurn(run, key, "scratch", message, false, &scratch->turns)) return;
  const std::string& k = run.keys[key];
  const Reply saved =
      run.api.Post(k, "/v1/sessions/session-scratch/save", {{"conversation_id", "scratch"}});
  run.tally.Check("workload", saved.status == 200,
                  KeyName(key) + ": saving session-scratch failed");
  scratch->kept = key % 2 == 1;
  if (scratch->kept) return;
  const Reply ended = run.api.Post(k, "/v1/conversations/end", {{"conversation_id", "scratch"}});
  const Reply deleted = run.api.Send("DELETE", "/v1/sessions/session-scratch", k);
  run.tally.Check("workload", ended.status == 200 && deleted.status == 200,
                  KeyName(key) + ": deleting its scratch conversation or session failed");
}

// Every route, with no key, a wrong one and near misses of a real one: 401, and (checked
// later with the right keys) nothing changed, though the requests name real conversations,
// sessions and facts.
void CheckBadKeys(Run& run) {
  const Json conv = {{"conversation_id", "conv-0"}};
  const Json chat = ChatBody("conv-0", "Forged turn.", 2);
  const std::vector<std::tuple<std::string, std::string, Json>> routes = {
      {"POST", "/v1/chat/completions", chat},
      {"POST", "/v1/completions", {{"prompt", "Forged."}, {"max_tokens", 2}}},
      {"GET", "/v1/models", {}},
      {"POST",
       "/v1/conversations/append",
       {{"conversation_id", "conv-0"}, {"messages", {{{"role", "user"}, {"content", "Forged."}}}}}},
      {"GET", "/v1/conversations/conv-0/history", {}},
      {"POST", "/v1/conversations/search", {{"conversation_id", "conv-0"}, {"query", "harbour"}}},
      {"POST", "/v1/conversations/list", Json::object()},
      {"POST", "/v1/conversations/end", conv},
      {"POST", "/v1/sessions/session-0/save", {{"conversation_id", "conv-1"}}},
      {"POST", "/v1/sessions/session-0/load", conv},
      {"POST", "/v1/sessions/session-0/clear", Json::object()},
      {"GET", "/v1/sessions", {}},
      {"GET", "/v1/sessions/session-0", {}},
      {"DELETE", "/v1/sessions/session-0", {}},
      {"GET", "/v1/knowledge", {}},
      {"GET", "/v1/knowledge?topic=topic-0", {}},
      {"GET", "/v1/knowledge/search?q=harbour", {}},
      {"POST", "/v1/knowledge/topic-0", {{"key", "fact-0"}, {"value", "Forged."}}},
      {"GET", "/v1/cache/stats", {}},
      {"GET", "/v1/cache/tree", {}},
      {"GET", "/metrics", {}},
  };
  const std::string& real = run.keys[0];
  const std::vector<std::string> bad = {"", "not-a-key", real.substr(0, real.size() - 1),
                                        real + "x"};
  for (const auto& [method, path, body] : routes) {
    for (const std::string& key : bad) {
      const Reply reply = run.api.Send(method, path, key, body);
      run.tally.Check("auth", reply.status == 401,
                      method + " " + path + " with key \"" + key + "\" answered " +
                          std::to_string(reply.status));
      CheckClean(run, "auth", -1, reply.body, method + " " + path + "'s 401");
    }
  }
}

void CheckConversations(Run& run, int key, const std::vector<const Conversation*>& mine,
                        const Scratch& scratch) {
  std::map<std::string, size_t> expected;  // id -> turns
  for (const Conversation* c : mine) expected[c->id] = c->turns.size();
  if (scratch.kept) expected["scratch"] = scratch.turns.size();
  const Reply list = run.api.Post(run.keys[key], "/v1/conversations/list", Json::object());
  std::map<std::string, size_t> listed;
  for (const Json& info : At(list.json, "conversations")) {
    listed[Str(At(info, "conversation_id"))] = static_cast<size_t>(Int(At(info, "turns")));
  }
  run.tally.Check("conversation_list", listed == expected,
                  KeyName(key) + ": the list is " + DumpJson(At(list.json, "conversations")));
  CheckClean(run, "conversation_list", key, list.body, "the conversation list");
  for (const Conversation* c : mine) CheckHistory(run, "history", key, c->id, c->turns);
}

// Each conversation's search finds its own words and none of the other keys' words planted
// in their conversations of the same id.
void CheckSearch(Run& run, int key, const std::vector<const Conversation*>& mine) {
  auto search = [&](const std::string& id, const std::string& query) {
    return run.api.Post(run.keys[key], "/v1/conversations/search",
                        {{"conversation_id", id}, {"query", query}, {"k", 100}});
  };
  for (const Conversation* c : mine) {
    if (c->words.empty()) continue;
    const Reply own = search(c->id, c->words[0]);
    run.tally.Check("search", own.body.find(c->words[0]) != std::string::npos,
                    KeyName(key) + ": " + c->id + "'s search misses its own " + c->words[0]);
    CheckClean(run, "search", key, own.body, c->id + "'s search for its own word");
    CheckClean(run, "search", key, search(c->id, "harbour").body, c->id + "'s search for harbour");
    for (int other = 0; other < static_cast<int>(run.keys.size()); ++other) {
      if (other == key) continue;
      const std::string word = run.plants.Word(other, c->index, "t0");
      CheckClean(run, "search", key, search(c->id, word).body, c->id + "'s search for " + word);
    }
  }
}

void CheckKnowledge(Run& run, int key, const std::vector<const Conversation*>& mine) {
  const std::string& k = run.keys[key];
  std::map<std::string, int64_t> topics;                            // topic -> facts
  std::map<std::string, std::map<std::string, std::string>> facts;  // topic -> key -> value
  for (const Conversation* c : mine) {
    ++topics[c->topic];
    facts[c->topic][c->fact_key] = c->fact_value;
  }
  const Reply list = run.api.Get(k, "/v1/knowledge");
  std::map<std::string, int64_t> listed;
  for (const Json& t : At(list.json, "data")) listed[Str(At(t, "topic"))] = Int(At(t, "facts"));
  run.tally.Check("knowledge", listed == topics, KeyName(key) + ": topics " + list.body);
  for (const auto& [topic, expected] : facts) {
    const Reply got = run.api.Get(k, "/v1/knowledge?topic=" + topic);
    std::map<std::string, std::string> held;
    for (const Json& f : At(got.json, "data")) held[Str(At(f, "key"))] = Str(At(f, "value"));
    run.tally.Check("knowledge", held == expected, KeyName(key) + ": " + topic + " " + got.body);
    CheckClean(run, "knowledge", key, got.body, "topic " + topic);
  }
  // Every fact names the harbour: a search for it must find all of this key's, only them.
  const Reply all = run.api.Get(k, "/v1/knowledge/search?q=harbour&k=100");
  const size_t n_results = At(all.json, "results").is_array() ? At(all.json, "results").size() : 0;
  run.tally.Check("knowledge", n_results == std::min<size_t>(mine.size(), 100),
                  KeyName(key) + ": harbour search found " + std::to_string(n_results));
  CheckClean(run, "knowledge", key, all.body, "the harbour search");
  for (const Conversation* c : mine) {
    const Reply own = run.api.Get(k, "/v1/knowledge/search?q=" + c->fact_word);
    run.tally.Check("knowledge", own.body.find(c->fact_value) != std::string::npos,
                    KeyName(key) + ": search misses its fact " + c->fact_word);
    for (int other = 0; other < static_cast<int>(run.keys.size()); ++other) {
      if (other == key) continue;
      const std::string word = run.plants.Word(other, c->index, "f");
      CheckClean(run, "knowledge", key, run.api.Get(k, "/v1/knowledge/search?q=" + word).body,
                 "the search for " + word);
    }
  }
}

// The key's sessions, each loaded back into a conversation ("restored-<i>", again the same
// ids under every key) whose history must be the saved one exactly.
void CheckSessions(Run& run, int key, const std::vector<const Conversation*>& mine,
                   const Scratch& scratch) {
  const std::string& k = run.keys[key];
  std::map<std::string, std::string> expected;  // name -> conversation id
  for (const Conversation* c : mine) expected[c->session] = c->id;
  if (scratch.kept) expected["session-scratch"] = "scratch";
  const Reply list = run.api.Get(k, "/v1/sessions");
  std::map<std::string, std::string> listed;
  for (const Json& s : At(list.json, "data")) {
    listed[Str(At(s, "name"))] = Str(At(s, "conversation_id"));
  }
  run.tally.Check("sessions", listed == expected, KeyName(key) + ": sessions " + list.body);
  for (const Conversation* c : mine) {
    const Reply info = run.api.Get(k, "/v1/sessions/" + c->session);
    run.tally.Check("sessions",
                    Str(At(info.json, "conversation_id")) == c->id &&
                        Int(At(info.json, "turns")) == static_cast<int64_t>(c->turns.size()),
                    KeyName(key) + ": " + c->session + " is " + info.body);
    const std::string restored = "restored-" + std::to_string(c->index);
    const Reply loaded =
        run.api.Post(k, "/v1/sessions/" + c->session + "/load", {{"conversation_id", restored}});
    run.tally.Check("sessions", loaded.status == 200,
                    KeyName(key) + ": loading " + c->session + ": " + loaded.body);
    CheckHistory(run, "sessions", key, restored, c->turns);
  }
}

// Even keys deleted their scratch conversation and session; odd keys' must be intact.
void CheckScratch(Run& run, int key, const Scratch& scratch) {
  const std::string& k = run.keys[key];
  const Reply session = run.api.Get(k, "/v1/sessions/session-scratch");
  if (scratch.kept) {
    CheckHistory(run, "deletes", key, "scratch", scratch.turns);
    run.tally.Check("deletes", Str(At(session.json, "conversation_id")) == "scratch",
                    KeyName(key) + ": its kept session-scratch is " + session.body);
    return;
  }
  // Gone for this key, though the odd keys' of the same names are not.
  const Reply history = run.api.Get(k, "/v1/conversations/scratch/history");
  const Reply loaded = run.api.Post(k, "/v1/sessions/session-scratch/load", Json::object());
  run.tally.Check("deletes", history.status == 404 && session.status == 404 && loaded.status == 404,
                  KeyName(key) + ": its deleted scratch answers " + std::to_string(history.status) +
                      " / " + std::to_string(session.status) + " / " +
                      std::to_string(loaded.status));
  const Json search = {
      {"conversation_id", "scratch"},
      {"query", run.plants.Word((key + 1) % static_cast<int>(run.keys.size()), 0, "s")}};
  CheckClean(run, "deletes", key, run.api.Post(k, "/v1/conversations/search", search).body,
             "the search of its deleted scratch");
}

// The cache tree's previews (prompt text) and the server-wide routes (no prompt text).
void CheckCacheViews(Run& run, int key, const std::vector<const Conversation*>& mine) {
  const Reply tree = run.api.Get(run.keys[key], "/v1/cache/tree?limit=10000");
  run.tally.Check("cache_tree", tree.status == 200,
                  KeyName(key) + ": the tree answered " + std::to_string(tree.status));
  CheckClean(run, "cache_tree", key, tree.body, "the cache tree");
  for (const Conversation* c : mine) {
    for (const std::string& word : c->words) {
      if (tree.body.find(word) != std::string::npos) ++run.own_words_in_tree;
    }
  }
  for (const char* path : {"/v1/cache/stats", "/metrics", "/health", "/dashboard"}) {
    const bool keyless =
        std::string_view(path) == "/health" || std::string_view(path) == "/dashboard";
    const Reply reply = run.api.Get(keyless ? "" : run.keys[key], path);
    CheckClean(run, "server_wide", -1, reply.body, path);
  }
}

// Everything of one key, with that key, while the other keys check theirs.
void CheckKey(Run& run, int key, const std::vector<Conversation>& all, const Scratch& scratch) {
  std::vector<const Conversation*> mine;
  for (const Conversation& c : all) {
    if (c.key == key) mine.push_back(&c);
  }
  CheckConversations(run, key, mine, scratch);
  CheckSearch(run, key, mine);
  CheckKnowledge(run, key, mine);
  CheckCacheViews(run, key, mine);
  CheckSessions(run, key, mine, scratch);  // last: the loads add conversations
  CheckScratch(run, key, scratch);
}

// The operator's declared sharing, a control that the prefix checks see reuse across keys
// when there is some: every key must reuse the --preload prefix (a long system prompt).
// Before the workload, while the preloaded sequence is still on the device.
void CheckDeclaredShared(Run& run, const std::string& system) {
  for (size_t k = 0; k < run.keys.size(); ++k) {
    const std::string question = "A question of " + KeyName(static_cast<int>(k)) + ".";
    const Json body = {
        {"messages",
         {{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", question}}}},
        {"max_tokens", 2},
        {"temperature", 0},
        {"recall", false}};
    const ChatReply reply = run.api.Chat(run.keys[k], body, /*stream=*/false);
    const long long cached = Int(At(At(reply.usage, "prompt_tokens_details"), "cached_tokens"));
    run.tally.Check("declared_shared", cached >= kMinSharedTokens,
                    KeyName(static_cast<int>(k)) + " reused " + std::to_string(cached) +
                        " tokens of the preloaded prefix");
  }
}

// About `tokens` tokens no earlier prompt starts with or holds: every sentence names `word`.
std::string TimingPrompt(const std::string& word, int tokens) {
  std::string text = word + " opens these ledger notes.";
  // About 2 characters a token: Qwen2's vocabulary splits numbers into digits, and the hex
  // of the word.
  for (int i = 0; static_cast<int>(text.size()) < tokens * 2; ++i) {
    text += " Entry " + std::to_string(i) + " of " + word + " lists " +
            std::to_string(i * 7919 % 1000) + " crates.";
  }
  return text;
}

// Until the block store has no write pending (at most 30 s): the background encoding and
// writing of one timed request's blocks would otherwise slow the next one's prefill, and
// only some of the timed requests leave new blocks behind (a repeat does not).
void WaitForIdleWriter(Run& run) {
  httplib::Client client("127.0.0.1", run.api.port());  // polls are not counted as requests
  const httplib::Headers key = {{"Authorization", "Bearer " + run.keys[0]}};
  for (int i = 0; i < 1500; ++i) {
    httplib::Result stats = client.Get("/v1/cache/stats", key);
    if (!stats) return;
    if (Int(At(ParseJson(stats->body).value_or(Json()), "pending_writes")) == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

struct PrefixTiming {
  // Time to first token: A's first send of P, A's repeat, B's copy, B's never-seen prompt.
  std::vector<double> original_s, own_s, other_s, fresh_s;
  std::vector<double> own_cached, other_cached, fresh_cached;
  std::vector<double> prompt_tokens;
};

double CachedTokens(const ChatReply& reply) {
  return static_cast<double>(Int(At(At(reply.usage, "prompt_tokens_details"), "cached_tokens")));
}

// One request of the timing phase, streamed, on a quiet server.
Result<ChatReply> TimedChat(Run& run, int key, const Json& body) {
  WaitForIdleWriter(run);
  ChatReply reply = run.api.Chat(run.keys[key], body, /*stream=*/true);
  if (!reply.done || reply.first_token_s < 0) {
    return InternalError("bench isolation: a timing request failed (" +
                         std::to_string(reply.status) + ")");
  }
  return reply;
}

// B's copy of A's prompt may have cached no more than a never-seen prompt (`unseen`) did.
void CheckNotReused(Run& run, int a, int b, const ChatReply& unseen, const ChatReply& copy,
                    const std::string& what) {
  run.tally.Check("prefix_cache", CachedTokens(copy) <= CachedTokens(unseen) + kTemplateSlackTokens,
                  KeyName(b) + " got " + std::to_string(std::lround(CachedTokens(copy))) +
                      " cached tokens of " + KeyName(a) + "'s " + what + " (source " +
                      Str(At(copy.kvault, "cache_source")) + ")");
}

// Per repetition: key A sends a never-seen prompt P, then again (its own cache); key B sends
// P and a never-seen prompt of its own (fresh), in alternating order so that neither always
// comes first; then A and B each send another never-seen prompt in their conversation of the
// same id (parked sequences and tail blocks of kept conversations).
Result<PrefixTiming> MeasurePrefixes(Run& run, std::mt19937_64& rng) {
  PrefixTiming timing;
  const int n_keys = static_cast<int>(run.keys.size());
  for (int r = 0; r < run.o.repetitions; ++r) {
    const int a = r % n_keys, b = (r + 1) % n_keys;
    // Without recall: both keys' prompts are then the same tokens.
    const auto body = [&](const std::string& word) {
      return Json{
          {"messages", {{{"role", "user"}, {"content", TimingPrompt(word, run.o.prefix_tokens)}}}},
          {"max_tokens", 2},
          {"temperature", 0},
          {"ignore_eos", true},
          {"recall", false}};
    };
    const Json prompt = body("ts" + RandomHex(rng, 10)), unseen = body("tf" + RandomHex(rng, 10));
    KV_ASSIGN_OR_RETURN(const ChatReply original, TimedChat(run, a, prompt));
    KV_ASSIGN_OR_RETURN(const ChatReply own, TimedChat(run, a, prompt));
    ChatReply other, fresh;
    for (int i = 0; i < 2; ++i) {
      const bool copy_now = (i + r) % 2 == 0;
      KV_ASSIGN_OR_RETURN(ChatReply reply, TimedChat(run, b, copy_now ? prompt : unseen));
      (copy_now ? other : fresh) = std::move(reply);
    }
    CheckNotReused(run, a, b, fresh, other, "stateless prompt");
    timing.prompt_tokens.push_back(static_cast<double>(Int(At(original.usage, "prompt_tokens"))));
    timing.original_s.push_back(original.first_token_s);
    timing.fresh_s.push_back(fresh.first_token_s);
    timing.own_s.push_back(own.first_token_s);
    timing.other_s.push_back(other.first_token_s);
    timing.fresh_cached.push_back(CachedTokens(fresh));
    timing.own_cached.push_back(CachedTokens(own));
    timing.other_cached.push_back(CachedTokens(other));
    Json in_conversation = body("tc" + RandomHex(rng, 10));
    in_conversation["conversation_id"] = "prefix-" + std::to_string(r);
    KV_ASSIGN_OR_RETURN(const ChatReply kept, TimedChat(run, a, in_conversation));
    KV_ASSIGN_OR_RETURN(const ChatReply kept_copy, TimedChat(run, b, in_conversation));
    CheckNotReused(run, a, b, kept, kept_copy, "conversation prefix-" + std::to_string(r));
  }
  return timing;
}

Json PrefixJson(Run& run, const PrefixTiming& t) {
  const double fresh = Percentile(t.fresh_s, 50), own = Percentile(t.own_s, 50),
               other = Percentile(t.other_s, 50);
  // Only a difference between fresh and cached that the noise cannot hide says anything.
  // B's time must be nearer the fresh one than A's repeat on a log scale: timing noise on a
  // shared machine multiplies.
  const bool conclusive = fresh >= 2 * own;
  if (conclusive) {
    run.tally.Check("prefix_timing", other > std::sqrt(fresh * own),
                    "another key's copy of a prompt took " + std::to_string(other) +
                        " s, the owner's repeat " + std::to_string(own) + " s, fresh " +
                        std::to_string(fresh) + " s");
  }
  return {{"repetitions", t.fresh_s.size()},
          {"prompt_tokens", Percentile(t.prompt_tokens, 50)},
          {"fresh_ttft_p50_s", fresh},
          {"original_ttft_p50_s", Percentile(t.original_s, 50)},
          {"own_repeat_ttft_p50_s", own},
          {"other_key_ttft_p50_s", other},
          {"other_over_fresh", Ratio(other, fresh)},
          {"other_over_own_repeat", Ratio(other, own)},
          {"fresh_over_own_repeat", Ratio(fresh, own)},
          {"fresh_cached_tokens_max", Percentile(t.fresh_cached, 100)},
          {"own_repeat_cached_tokens_p50", Percentile(t.own_cached, 50)},
          {"other_key_cached_tokens_max", Percentile(t.other_cached, 100)},
          {"timing_conclusive", conclusive},
          {"fresh_ttft_s", t.fresh_s},
          {"own_repeat_ttft_s", t.own_s},
          {"other_key_ttft_s", t.other_s}};
}

std::vector<Conversation> PlanConversations(const Run& run) {
  std::vector<Conversation> all(static_cast<size_t>(run.o.conversations));
  for (size_t i = 0; i < all.size(); ++i) {
    Conversation& c = all[i];
    c.key = static_cast<int>(i % run.keys.size());
    c.index = static_cast<int>(i / run.keys.size());
    c.id = ConversationId(c.index);
    c.topic = "topic-" + std::to_string(c.index % kTopics);
    c.fact_key = "fact-" + std::to_string(c.index);
    c.fact_word = run.plants.Word(c.key, c.index, "f");
    c.fact_value = "The harbour code of " + c.id + " is " + c.fact_word + ".";
    c.session = "session-" + std::to_string(c.index);
  }
  return all;
}

// `kvault serve` with `keys` and, as what the operator declares shared, one preloaded prompt
// with `shared_system` as its system prompt.
Result<std::unique_ptr<BenchServer>> StartServer(const IsolationOptions& o,
                                                 const std::vector<std::string>& keys,
                                                 const std::string& shared_system) {
  std::string key_list;
  for (const std::string& key : keys) key_list += (key_list.empty() ? "" : ",") + key;
  std::unique_ptr<BenchDir> scratch_dir = BenchDir::Scratch("isolation");
  const std::string preload = scratch_dir->path() + "/preload.json";
  const Json preloaded = Json::array({{{"messages",
                                        {{{"role", "system"}, {"content", shared_system}},
                                         {{"role", "user"}, {"content", "Hello."}}}}}});
  KV_RETURN_IF_ERROR(CreateDirectories(scratch_dir->path()));
  KV_RETURN_IF_ERROR(WriteFileAtomic(preload, DumpJson(preloaded)));
  ServerParams params;
  params.model_path = o.model_path;
  params.threads = o.threads;
  params.window = std::max(4096, o.prefix_tokens + 512);
  // Every client may wait at once: a 503 would be a refusal, not the isolation under test.
  params.extra_args = {"--api-key",
                       key_list,
                       "--preload",
                       preload,
                       "--conversation-queue",
                       std::to_string(o.conversations + o.keys)};
  params.extra_args.insert(params.extra_args.end(), o.kvault_args.begin(), o.kvault_args.end());
  return BenchServer::Start(params, std::move(scratch_dir));
}

Result<Json> Measure(const IsolationOptions& o) {
  std::mt19937_64 rng(std::random_device{}());
  std::vector<std::string> keys;
  for (int k = 0; k < o.keys; ++k) {
    keys.push_back("bench-key-" + std::to_string(k) + "-" + RandomHex(rng, 12));
  }
  const std::string shared_system = TimingPrompt("operatornotes", 600);
  KV_ASSIGN_OR_RETURN(std::unique_ptr<BenchServer> server, StartServer(o, keys, shared_system));
  Run run{o, Api(server->port()), Plants(o.keys, rng), keys, {}, {0}, {0}};
  std::vector<Conversation> conversations = PlanConversations(run);
  std::vector<Scratch> scratch(static_cast<size_t>(o.keys));
  CheckDeclaredShared(run, shared_system);

  const BenchClock::time_point workload_start = BenchClock::now();
  {
    std::vector<std::jthread> clients;
    for (Conversation& c : conversations) {
      clients.emplace_back([&run, &c] { RunConversation(run, &c); });
    }
    for (int k = 0; k < o.keys; ++k) {
      clients.emplace_back([&run, &scratch, k] { RunScratch(run, k, &scratch[k]); });
    }
  }
  const double workload_s = SecondsSince(workload_start);
  CheckBadKeys(run);
  const BenchClock::time_point check_start = BenchClock::now();
  {
    std::vector<std::jthread> checkers;
    for (int k = 0; k < o.keys; ++k) {
      checkers.emplace_back([&, k] { CheckKey(run, k, conversations, scratch[k]); });
    }
  }
  const double check_s = SecondsSince(check_start);
  KV_ASSIGN_OR_RETURN(const PrefixTiming timing, MeasurePrefixes(run, rng));
  Json report = {{"model", o.model_path},
                 {"conversations", o.conversations},
                 {"keys", o.keys},
                 {"turns", o.turns},
                 {"max_tokens", o.max_tokens},
                 {"workload_seconds", workload_s},
                 {"check_seconds", check_s},
                 {"prompts_with_own_fact", run.prompts_with_own_fact.load()},
                 {"own_words_in_cache_tree", run.own_words_in_tree.load()},
                 {"prefix", PrefixJson(run, timing)}};
  report["requests"] = run.api.requests();
  report.update(run.tally.ToJson());
  return report;
}

void PrintTable(const Json& r) {
  std::printf(
      "%lld conversations over %lld keys (colliding ids, session names, topics, fact keys), "
      "%lld turns each: %lld requests, %lld checks, %lld violations\n",
      Int(r["conversations"]), Int(r["keys"]), Int(r["turns"]), Int(r["requests"]),
      Int(r["checks"]), Int(r["violations"]));
  std::printf(
      "workload %.1f s, checks %.1f s; prompts with their own recalled fact: %lld; own "
      "planted words in the cache tree: %lld\n",
      NumberOr(r, "workload_seconds", 0), NumberOr(r, "check_seconds", 0),
      Int(r["prompts_with_own_fact"]), Int(r["own_words_in_cache_tree"]));
  std::printf("%-20s %8s %11s\n", "check", "checks", "violations");
  for (const auto& [name, counts] : r["categories"].items()) {
    std::printf("%-20s %8lld %11lld\n", name.c_str(), Int(counts["checks"]),
                Int(counts["violations"]));
  }
  const Json& p = r["prefix"];
  std::printf(
      "cached prefixes (%.0f-token prompt, %lld repetitions), TTFT p50: key A first %.4f s, "
      "key A again %.4f s, key B the same prompt %.4f s, key B a fresh prompt %.4f s\n",
      NumberOr(p, "prompt_tokens", 0), Int(p["repetitions"]), NumberOr(p, "original_ttft_p50_s", 0),
      NumberOr(p, "own_repeat_ttft_p50_s", 0), NumberOr(p, "other_key_ttft_p50_s", 0),
      NumberOr(p, "fresh_ttft_p50_s", 0));
  std::printf(
      "  B same / B fresh %.2fx, B same / A again %.2fx%s; cached tokens: A again p50 %.0f, "
      "B same max %.0f, B fresh max %.0f\n",
      NumberOr(p, "other_over_fresh", 0), NumberOr(p, "other_over_own_repeat", 0),
      p["timing_conclusive"] == true ? "" : " (inconclusive: fresh < 2x the cached repeat)",
      NumberOr(p, "own_repeat_cached_tokens_p50", 0), NumberOr(p, "other_key_cached_tokens_max", 0),
      NumberOr(p, "fresh_cached_tokens_max", 0));
  for (const Json& example : r["violation_examples"]) std::printf("  %s\n", Str(example).c_str());
}

}  // namespace

int RunBenchIsolation(int argc, char** argv) {
  CLI::App app(
      "Tenant isolation under concurrent load: colliding conversation ids, session names and "
      "topics over several API keys; every leak or change across keys is a violation.",
      "bench isolation");
  IsolationOptions o;
  AddModelOption(app, o);
  AddBoundedOption(app, "--conversations", o.conversations, "concurrent conversations", 1, 512);
  AddBoundedOption(app, "--keys", o.keys, "API keys (conversation i belongs to key i % keys)", 2,
                   16);
  AddBoundedOption(app, "--turns", o.turns, "chat turns per conversation", 1, 50);
  AddBoundedOption(app, "--max-tokens", o.max_tokens, "tokens per reply", 1, 256);
  AddBoundedOption(app, "--prefix-tokens", o.prefix_tokens, "about how long the timing prompt is",
                   256, 60000);
  AddBoundedOption(app, "--repetitions", o.repetitions, "timing repetitions", 1, 100);
  AddThreadsOption(app, o);
  AddKvaultArgsOption(app, o);
  int64_t violations = 0;
  const int exit_code = RunDriver(
      app, o, argc, argv,
      [&]() -> Result<Json> {
        Result<Json> report = Measure(o);
        if (report.ok()) violations = Int((*report)["violations"]);
        return report;
      },
      PrintTable);
  if (exit_code != 0 || violations == 0) return exit_code;
  return ReportError(
      InternalError("bench isolation: " + std::to_string(violations) + " isolation violations"));
}

}  // namespace kvault::cli
