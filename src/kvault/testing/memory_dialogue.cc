#include "kvault/testing/memory_dialogue.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <random>
#include <span>

#include "kvault/base/check.h"
#include "kvault/testing/dialogue_generator.h"

namespace kvault::testing {
namespace {

using Words = std::span<const std::string_view>;

// Values that fill the templates' {slots}. Each dialogue draws them without replacement, so
// two questions of one dialogue never share a value.
constexpr std::string_view kRelatives[] = {"sister", "brother",    "cousin", "aunt",
                                           "uncle",  "niece",      "nephew", "flatmate",
                                           "godson", "grandmother"};
// Names the filler never uses: they link the turns of one multi-turn fact.
constexpr std::string_view kNames[] = {
    "Ottoline",  "Thaddeus", "Esperanza", "Lorcan",  "Wilhelmina", "Caspian",   "Philippa",
    "Ignatius",  "Rosalind", "Evander",   "Marisol", "Cornelius",  "Henrietta", "Leopold",
    "Seraphina", "Barnaby",  "Imogen",    "Florian", "Ludmila",    "Ambrose"};
constexpr std::string_view kFillerNames[] = {"Omar", "Priya", "Lukas", "Mei", "Diego", "Chloe"};
constexpr std::string_view kValues[] = {"Quince",    "Nimbus",  "Pemberton", "Zanzibar",
                                        "Marmaduke", "Figaro",  "Tiramisu",  "Humbug",
                                        "Mothball",  "Octavia", "Jellybean", "Gnocchi"};
constexpr std::string_view kSurnames[] = {"Okonkwo",     "Lindqvist", "Abernathy", "Castellanos",
                                          "Thistlewood", "Nakashima", "Oyelaran",  "Kowalczyk",
                                          "Brannigan",   "Ferreira"};
constexpr std::string_view kStreets[] = {"Juniper",   "Foxglove", "Alderney",
                                         "Marchmont", "Wexford",  "Tamarind"};
constexpr std::string_view kColours[] = {"maroon", "turquoise", "mustard", "olive", "lilac"};
constexpr std::string_view kMakes[] = {"Volvo", "Fiat", "Saab", "Skoda", "Subaru", "Peugeot"};
constexpr std::string_view kProfessions[] = {"anaesthetist", "cartographer", "actuary",
                                             "sommelier",    "glassblower",  "archivist"};
constexpr std::string_view kInstruments[] = {"cello",       "bassoon",  "ukulele",
                                             "harpsichord", "trombone", "mandolin"};
constexpr std::string_view kSports[] = {"fencing", "judo", "archery", "rowing", "badminton"};
constexpr std::string_view kFilms[] = {"The Glass Orchard", "Paper Lanterns", "Northbound Tide",
                                       "A Quiet Meridian", "The Salt Years"};
constexpr std::string_view kAllergens[] = {"hazelnuts", "shellfish", "sesame", "kiwi", "celery"};
constexpr std::string_view kCities[] = {"Tbilisi",   "Valparaiso", "Bergen", "Hanoi",
                                        "Marrakesh", "Ljubljana",  "Cusco",  "Tallinn"};
constexpr std::string_view kHotels[] = {"Hotel Aurelia", "the Lantern Inn", "Villa Serafina",
                                        "the Copper Beech", "Casa Olmo"};
constexpr std::string_view kAuthors[] = {"Oksana Vey", "Tomas Arlen", "Ines Calloway",
                                         "Rufus Penhaligon", "Mireille Dax"};
constexpr std::string_view kDishes[] = {"baklava", "focaccia", "croissants",
                                        "pavlova", "challah",  "strudel"};
constexpr std::string_view kPets[] = {"ferret", "tortoise", "parrot", "hamster", "rabbit"};
constexpr std::string_view kExams[] = {"driving", "Spanish", "sailing", "first aid", "piano"};
constexpr std::string_view kRepairs[] = {"a crown", "a root canal", "two fillings", "a bridge"};

const std::map<std::string_view, Words>& SlotWords() {
  static const std::map<std::string_view, Words> kSlots = {{"rel", kRelatives},
                                                           {"name", kNames},
                                                           {"fname", kFillerNames},
                                                           {"value", kValues},
                                                           {"surname", kSurnames},
                                                           {"street", kStreets},
                                                           {"colour", kColours},
                                                           {"make", kMakes},
                                                           {"profession", kProfessions},
                                                           {"instrument", kInstruments},
                                                           {"sport", kSports},
                                                           {"film", kFilms},
                                                           {"allergen", kAllergens},
                                                           {"city", kCities},
                                                           {"hotel", kHotels},
                                                           {"author", kAuthors},
                                                           {"dish", kDishes},
                                                           {"dish2", kDishes},
                                                           {"pet", kPets},
                                                           {"exam", kExams},
                                                           {"repair", kRepairs}};
  return kSlots;
}

// One question and the turns that answer it. Each statement is a user turn of its own, in a
// session of its own, in order, sessions apart. {month} is the month and year of the session
// of the last statement; with `opener`, that session's opening message (which holds the
// date) is evidence too, and the answer is its date.
struct QuestionTemplate {
  QuestionKind kind;
  std::vector<std::string_view> statements;
  std::string_view question;
  std::string_view answer;  // "" with `opener` (the date) and for kNone
  std::vector<std::string_view> distractors;
  bool opener = false;
};

// The paraphrases are the kind people use; some have a link in a thesaurus (sailboat / boat,
// apartment / flat, film / movie), some have none (earn my living / job).
const std::vector<QuestionTemplate>& Templates() {
  using K = QuestionKind;
  static const std::vector<QuestionTemplate> kTemplates = {
      {K::kSingle,
       {"I finally did it: I bought a little sailboat and named her {value}."},
       "What did I call my boat?",
       "{value}",
       {"My {rel} keeps saying a boat is a waste of money.",
        "{fname} called to say the boat trip is off."}},
      {K::kSingle,
       {"My new physician, Dr {surname}, wants to see me every spring."},
       "Who is my doctor?",
       "Dr {surname}",
       {"My {rel} had to see a doctor twice this month.", "Is it normal for a doctor to be late?"}},
      {K::kSingle,
       {"We signed the lease on an apartment on {street} Road, third floor."},
       "Where is our new flat?",
       "{street} Road",
       {"My {rel} is hunting for a new flat too, without luck."}},
      {K::kSingle,
       {"The automobile I drive these days is an old {colour} {make}, a tough little car."},
       "What kind of car do I have?",
       "{colour} {make}",
       {"{fname} says a car is useless in the city.", "What kind of car is best for snow?"}},
      {K::kSingle,
       {"Last month I bought a secondhand {instrument} from a neighbour."},
       "Which instrument did I purchase?",
       "{instrument}",
       {"My {rel} wants to buy a musical instrument for the kids."}},
      {K::kSingle,
       {"Our kid has started {sport} lessons on Saturdays."},
       "What lessons does my child take?",
       "{sport}",
       {"My {rel}'s child is learning to swim.", "Which sport is good for a shy child?"}},
      {K::kSingle,
       {"My favourite film of all time is {film}, I have seen it a dozen times."},
       "What movie do I like best?",
       "{film}",
       {"We watched a movie with {fname} yesterday, I did not like it much."}},
      {K::kSingle,
       {"I earn my living as a {profession}, which surprises most people."},
       "What is my job?",
       "{profession}",
       {"My {rel} hates the new job.", "Is it a good idea to change jobs at forty?"}},
      {K::kSingle,
       {"I have an allergy to {allergen}, so I always read the labels."},
       "What food am I allergic to?",
       "{allergen}",
       {"My {rel} has a food allergy too, but a mild one."}},
      {K::kSingle,
       {"Mum's maiden name was {surname}, her family came from the coast."},
       "What was my mother's family name before she married?",
       "{surname}",
       {"My {rel} married last year and kept the family name."}},
      {K::kSingle,
       {"Our new pet, a little {pet}, answers to {value}."},
       "What did we name the pet?",
       "{value}",
       {"{fname} wants a pet but the landlord says no.", "What is a good name for a pet?"}},
      {K::kMulti,
       {"By the way, my {rel} is called {name}, you will hear about her a lot.",
        "{name} adopted a {pet} from the shelter and called it {value}."},
       "What is the name of the animal my {rel} adopted?",
       "{value}",
       {"My {rel} talked about animals all evening.", "{fname} adopted a cat last year."}},
      {K::kMulti,
       {"My {rel} {name} is getting married next year!",
        "{name} and her fiance picked {city} for the wedding.",
        "I booked a room at {hotel} for the trip to {city}."},
       "Where am I staying for my {rel}'s wedding?",
       "{hotel} in {city}",
       {"I am staying at home this weekend.", "{fname}'s wedding was lovely."}},
      {K::kMulti,
       {"My colleague {name} lent me a novel by {author}.",
        "I finished the {author} book: the ending made me cry."},
       "How did I feel about the book my colleague lent me?",
       "the ending made me cry",
       {"A colleague of mine reads a book a week.", "{fname} lent me a jacket."}},
      {K::kMulti,
       {"I switched to a new dentist, Dr {surname}.",
        "Dr {surname} says I need {repair} on my back tooth."},
       "What did my dentist say I need?",
       "{repair}",
       {"My {rel} needs a new dentist.", "What do I need for the dentist appointment?"}},
      {K::kMulti,
       {"{name} from my pottery class is moving to {city} in the autumn.",
        "We are throwing a farewell party for {name} at the studio."},
       "Where is the friend from my pottery class moving?",
       "{city}",
       {"The pottery class is full this term.", "{fname} is moving house again."}},
      {K::kMulti,
       {"My {rel} {name} is the best cook in the family.",
        "{name} taught me her secret {dish} recipe at last."},
       "What recipe did my {rel} teach me?",
       "{dish}",
       {"My {rel} wants to learn a new recipe.", "{fname} taught me chess."}},
      {K::kTemporal,
       {"This morning I ran the {city} half marathon, in under two hours!"},
       "When did I run the half marathon?",
       "",
       {"I would like to run a half marathon one day.", "{fname} ran a marathon once."},
       true},
      {K::kTemporal,
       {"Big news: I passed my {exam} exam today."},
       "On what date did I pass my {exam} exam?",
       "",
       {"My {rel} failed the {exam} exam twice.", "Exams make me nervous."},
       true},
      {K::kTemporal,
       {"Today I baked {dish} for the first time, they came out great."},
       "What did I bake for the first time in {month}?",
       "{dish}",
       {"I baked {dish2} for the first time too, a disaster.", "Baking takes patience."},
       true},
      {K::kTemporal,
       {"We finally moved the piano into the new living room today."},
       "When did we move the piano?",
       "",
       {"The piano needs tuning.", "My {rel} wants to move house."},
       true},
      {K::kTemporal,
       {"I got the keys to the allotment plot today, plot number nine."},
       "When did I get my allotment?",
       "",
       {"The allotment waiting list is long.", "My {rel} gave up the allotment."},
       true},
      {K::kTemporal,
       {"I adopted a {pet} from the shelter today, my first pet ever."},
       "Which animal did I adopt in {month}?",
       "a {pet}",
       {"The shelter has so many animals.", "{fname} adopted a dog."},
       true},
      {K::kNone, {}, "What did I name my horse?", "", {"{fname} rides a horse every weekend."}},
      {K::kNone,
       {},
       "Which language am I learning?",
       "",
       {"My {rel} speaks a language I can not learn."}},
      {K::kNone, {}, "What is my gym locker code?", "", {"The gym is closed on Sundays."}},
      {K::kNone, {}, "Who is my optician?", "", {"Opticians are expensive here."}},
      {K::kNone, {}, "What colour is my front door?", "", {"I want to paint the front door."}},
      {K::kNone,
       {},
       "Where did my {rel} go on her honeymoon?",
       "",
       {"My {rel} is planning a honeymoon."}},
      {K::kNone, {}, "When did I break my wrist?", "", {"{fname} broke a wrist skiing."}},
      {K::kNone, {}, "What is my cousin's dog called?", "", {"My cousin wants a dog."}},
  };
  return kTemplates;
}

// Fills {slots} from `values`, drawing a value for a slot seen the first time.
class SlotFiller {
 public:
  explicit SlotFiller(std::mt19937_64* rng) : rng_(rng) {
    for (const auto& [slot, words] : SlotWords()) {
      std::vector<std::string_view> order(words.begin(), words.end());
      std::shuffle(order.begin(), order.end(), *rng_);
      pools_[slot] = std::move(order);
    }
  }
  // Values of one question: fresh ones for its slots (cycling when a pool runs out).
  void NewQuestion() { values_.clear(); }
  void Set(std::string_view slot, std::string value) { values_[std::string(slot)] = value; }

  std::string Fill(std::string_view pattern) {
    std::string out;
    size_t pos = 0;
    while (pos < pattern.size()) {
      const size_t open = pattern.find('{', pos);
      if (open == std::string_view::npos) break;
      const size_t close = pattern.find('}', open);
      out.append(pattern.substr(pos, open - pos));
      out += Value(pattern.substr(open + 1, close - open - 1));
      pos = close + 1;
    }
    if (pos < pattern.size()) out.append(pattern.substr(pos));
    return out;
  }

 private:
  std::string Value(std::string_view slot) {
    auto it = values_.find(std::string(slot));
    if (it != values_.end()) return it->second;
    auto pool = pools_.find(slot);
    KV_CHECK(pool != pools_.end(), "memory dialogue: unknown slot");
    size_t& next = next_[std::string(slot)];
    std::string value(pool->second[next++ % pool->second.size()]);
    values_[std::string(slot)] = value;
    return value;
  }

  std::mt19937_64* rng_;
  std::map<std::string_view, std::vector<std::string_view>> pools_;
  std::map<std::string, size_t> next_;
  std::map<std::string, std::string> values_;
};

// A user turn to insert into a session, with the question it belongs to.
struct Planted {
  int session = 0;
  int slot = 0;  // filler pair before which it goes
  std::string text;
  size_t question = 0;
  bool evidence = true;  // false: a distractor
};

struct Session {
  int64_t unix_seconds = 0;
};

constexpr const char* kAcknowledgements[] = {"Noted, thanks for telling me.",
                                             "That is good to know!",
                                             "Oh, interesting. Tell me more some time."};

std::string MonthText(int64_t unix_seconds) {
  const std::time_t t = unix_seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%B %Y", &tm);
  return buffer;
}

}  // namespace

std::string_view QuestionKindName(QuestionKind kind) {
  switch (kind) {
    case QuestionKind::kSingle: return "single";
    case QuestionKind::kMulti: return "multi";
    case QuestionKind::kTemporal: return "temporal";
    case QuestionKind::kNone: return "none";
  }
  return "?";
}

int QuestionTemplateCount(QuestionKind kind) {
  return static_cast<int>(
      std::count_if(Templates().begin(), Templates().end(),
                    [kind](const QuestionTemplate& t) { return t.kind == kind; }));
}

std::string DateText(int64_t unix_seconds) {
  const std::time_t t = unix_seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[64];
  std::strftime(buffer, sizeof(buffer), "%A, %d %B %Y", &tm);
  std::string text = buffer;
  const size_t comma = text.find(", 0");  // "3 May", not "03 May"
  if (comma != std::string::npos) text.erase(comma + 2, 1);
  return text;
}

namespace {

// Picks the templates of each kind, plans where each statement and distractor goes, and fills
// the questions (evidence turns are resolved once the dialogue is laid out).
std::vector<Planted> Plan(const MemoryDialogueParams& params, std::mt19937_64& rng,
                          const std::vector<Session>& sessions, MemoryDialogue* dialogue,
                          std::vector<const QuestionTemplate*>* chosen) {
  const std::pair<QuestionKind, int> counts[] = {{QuestionKind::kSingle, params.single},
                                                 {QuestionKind::kMulti, params.multi},
                                                 {QuestionKind::kTemporal, params.temporal},
                                                 {QuestionKind::kNone, params.none}};
  for (const auto& [kind, n] : counts) {
    KV_CHECK(n <= QuestionTemplateCount(kind), "memory dialogue: too many questions of a kind");
    std::vector<const QuestionTemplate*> of_kind;
    for (const QuestionTemplate& t : Templates()) {
      if (t.kind == kind) of_kind.push_back(&t);
    }
    std::shuffle(of_kind.begin(), of_kind.end(), rng);
    chosen->insert(chosen->end(), of_kind.begin(), of_kind.begin() + n);
  }
  auto pick = [&rng](int lo, int hi) {  // [lo, hi]
    return lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1));
  };
  // Nothing is planted in the last two sessions: they are the window, where nothing is
  // recalled.
  const int last = params.sessions - 3;
  SlotFiller filler(&rng);
  std::vector<Planted> planted;
  for (size_t q = 0; q < chosen->size(); ++q) {
    const QuestionTemplate& t = *(*chosen)[q];
    filler.NewQuestion();
    const int n = static_cast<int>(t.statements.size());
    // Statements in order, at least 3 sessions apart when there are several.
    const int span = std::min(last, 3 * (n - 1) + pick(0, last / 2));
    int session = pick(0, last - span);
    std::vector<int> at;
    for (int i = 0; i < n; ++i) {
      at.push_back(session);
      if (i + 1 < n) session += std::max(3, span / std::max(1, n - 1));
    }
    if (!at.empty()) {
      at.back() = std::min(at.back(), last);
      filler.Set("month", MonthText(sessions[at.back()].unix_seconds));
    }
    for (int i = 0; i < n; ++i) {
      planted.push_back(
          {at[i], pick(1, params.turns_per_session / 2 - 1), filler.Fill(t.statements[i]), q});
    }
    for (std::string_view d : t.distractors) {
      planted.push_back(
          {pick(0, last), pick(1, params.turns_per_session / 2 - 1), filler.Fill(d), q, false});
    }
    EvidenceQuestion question;
    question.kind = t.kind;
    question.question = filler.Fill(t.question);
    question.answer = t.opener && t.answer.empty() ? DateText(sessions[at.back()].unix_seconds)
                                                   : filler.Fill(t.answer);
    dialogue->questions.push_back(std::move(question));
  }
  std::stable_sort(planted.begin(), planted.end(), [](const Planted& a, const Planted& b) {
    return a.session != b.session ? a.session < b.session : a.slot < b.slot;
  });
  return planted;
}

}  // namespace

MemoryDialogue GenerateMemoryDialogue(const MemoryDialogueParams& params) {
  KV_CHECK(params.sessions >= 8 && params.turns_per_session >= 4, "memory dialogue: too small");
  std::mt19937_64 rng(params.seed);
  std::vector<Session> sessions(static_cast<size_t>(params.sessions));
  int64_t t = params.first_unix_seconds;
  for (Session& session : sessions) {
    session.unix_seconds = t;
    t += 86400 * static_cast<int64_t>(1 + rng() % 6) + static_cast<int64_t>(rng() % 7) * 1800;
  }
  MemoryDialogue dialogue;
  std::vector<const QuestionTemplate*> chosen;
  const std::vector<Planted> planted = Plan(params, rng, sessions, &dialogue, &chosen);

  DialogueGenerator filler(params.seed * 7919 + 1);
  size_t next = 0;
  int64_t now = 0;
  auto add = [&](memory::Role role, std::string text) {
    dialogue.turns.push_back({role, std::move(text), now});
    now += 60;
    return dialogue.turns.size() - 1;
  };
  for (int s = 0; s < params.sessions; ++s) {
    now = sessions[s].unix_seconds;
    const size_t opener =
        add(memory::Role::kUser, "Hi again! Today is " + DateText(sessions[s].unix_seconds) + ".");
    add(memory::Role::kAssistant, "Hello! Good to hear from you. What is on your mind today?");
    for (int pair = 0; pair < params.turns_per_session / 2; ++pair) {
      for (; next < planted.size() && planted[next].session == s && planted[next].slot <= pair;
           ++next) {
        const Planted& p = planted[next];
        const size_t turn = add(memory::Role::kUser, p.text);
        add(memory::Role::kAssistant, kAcknowledgements[turn % std::size(kAcknowledgements)]);
        EvidenceQuestion& question = dialogue.questions[p.question];
        if (!p.evidence) {
          question.distractors.push_back(turn);
          continue;
        }
        question.evidence.push_back(turn);
        question.dated_evidence.push_back(turn);
        if (chosen[p.question]->opener) question.evidence.push_back(opener);
      }
      for (int i = 0; i < 2; ++i) {
        DialogueTurn turn = filler.NextTurn();
        add(turn.role, std::move(turn.text));
      }
    }
  }
  for (EvidenceQuestion& question : dialogue.questions) {
    std::sort(question.evidence.begin(), question.evidence.end());
  }
  return dialogue;
}

}  // namespace kvault::testing
