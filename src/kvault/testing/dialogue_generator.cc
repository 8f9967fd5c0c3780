#include "kvault/testing/dialogue_generator.h"

#include <map>
#include <span>
#include <string_view>

#include "kvault/base/check.h"

namespace kvault::testing {
namespace {

using Words = std::span<const std::string_view>;

// Word lists, picked by the {slot} names of the templates below.
constexpr std::string_view kRelatives[] = {
    "sister",    "brother", "cousin", "aunt",  "uncle",  "neighbour", "grandmother", "grandfather",
    "colleague", "boss",    "nephew", "niece", "mother", "father",    "flatmate",    "godson"};
constexpr std::string_view kPets[] = {"dog",     "cat",      "parrot", "tortoise", "rabbit",
                                      "hamster", "goldfish", "ferret", "pony",     "canary"};
constexpr std::string_view kNames[] = {
    "Alice",  "Omar",  "Priya", "Lukas",  "Mei",   "Diego",  "Fatima", "Jonas", "Chloe", "Tariq",
    "Ingrid", "Mateo", "Aiko",  "Samuel", "Nadia", "Pieter", "Rosa",   "Kwame", "Elena", "Hamish"};
constexpr std::string_view kCities[] = {
    "Lisbon",  "Kyoto",  "Toronto",   "Nairobi", "Oslo",   "Valparaiso", "Edinburgh", "Hanoi",
    "Seville", "Krakow", "Melbourne", "Tbilisi", "Quebec", "Marrakesh",  "Bergen",    "Porto"};
constexpr std::string_view kWeekdays[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                          "Friday", "Saturday", "Sunday"};
constexpr std::string_view kMonths[] = {"January",   "February", "March",    "April",
                                        "May",       "June",     "July",     "August",
                                        "September", "October",  "November", "December"};
constexpr std::string_view kTimes[] = {"morning", "afternoon", "evening", "weekend", "lunchtime"};
constexpr std::string_view kAdjectives[] = {"lovely",   "exhausting", "surprising", "quiet",
                                            "chaotic",  "relaxing",   "pricey",     "delicious",
                                            "boring",   "wonderful",  "tricky",     "strange",
                                            "peaceful", "noisy",      "pleasant",   "odd"};
constexpr std::string_view kNumbers[] = {"two", "three", "four", "five", "six", "ten", "twenty"};

struct Topic {
  Words nouns, verbs, places;
};

constexpr std::string_view kTravelN[] = {"train",    "ticket", "suitcase",  "hostel",  "ferry",
                                         "passport", "map",    "guidebook", "flight",  "museum",
                                         "beach",    "market", "itinerary", "backpack"};
constexpr std::string_view kTravelV[] = {"book", "pack", "explore", "visit", "plan", "cancel"};
constexpr std::string_view kTravelP[] = {"airport", "station", "harbour", "old town", "hotel"};
constexpr std::string_view kCookN[] = {"soup",  "bread", "risotto", "oven",   "spices", "lentils",
                                       "dough", "sauce", "recipe",  "garlic", "pastry", "salad"};
constexpr std::string_view kCookV[] = {"bake", "simmer", "chop", "roast", "season", "taste"};
constexpr std::string_view kCookP[] = {"kitchen", "bakery", "farmers market", "restaurant"};
constexpr std::string_view kWorkN[] = {"deadline", "meeting",   "report",   "spreadsheet",
                                       "client",   "project",   "budget",   "presentation",
                                       "manager",  "interview", "schedule", "invoice"};
constexpr std::string_view kWorkV[] = {"finish",   "review", "present",
                                       "delegate", "draft",  "submit"};
constexpr std::string_view kWorkP[] = {"office", "conference room", "coworking space"};
constexpr std::string_view kFamilyN[] = {"dinner",   "visit",      "holiday", "phone call",
                                         "birthday", "wedding",    "photos",  "reunion",
                                         "present",  "christening"};
constexpr std::string_view kFamilyV[] = {"call", "visit", "surprise", "help", "invite", "organise"};
constexpr std::string_view kFamilyP[] = {"house", "village", "farm", "cottage"};
constexpr std::string_view kHobbyN[] = {"guitar", "chess",  "pottery",    "painting",   "knitting",
                                        "camera", "puzzle", "sketchbook", "board game", "choir"};
constexpr std::string_view kHobbyV[] = {"practise", "learn", "finish", "start", "improve", "share"};
constexpr std::string_view kHobbyP[] = {"studio", "club", "community centre"};
constexpr std::string_view kGardenN[] = {"tomatoes", "roses", "compost",    "seeds",
                                         "hedge",    "lawn",  "greenhouse", "shovel",
                                         "tulips",   "beans", "weeds"};
constexpr std::string_view kGardenV[] = {"plant", "water", "prune", "harvest", "dig", "mow"};
constexpr std::string_view kGardenP[] = {"allotment", "backyard", "garden centre"};
constexpr std::string_view kHealthN[] = {"sleep",       "diet",     "stretching",
                                         "appointment", "vitamins", "headache",
                                         "knee",        "posture",  "breathing"};
constexpr std::string_view kHealthV[] = {"rest", "stretch", "track", "improve", "avoid"};
constexpr std::string_view kHealthP[] = {"gym", "clinic", "park", "pool"};
constexpr std::string_view kBooksN[] = {"novel",     "chapter", "documentary", "series", "thriller",
                                        "biography", "author",  "sequel",      "ending", "trailer"};
constexpr std::string_view kBooksV[] = {"read", "watch", "recommend", "finish", "discuss"};
constexpr std::string_view kBooksP[] = {"library", "cinema", "bookshop"};
constexpr std::string_view kSportN[] = {"match",  "team", "training", "marathon", "bicycle",
                                        "racket", "goal", "season",   "coach",    "tournament"};
constexpr std::string_view kSportV[] = {"train", "win", "cycle", "swim", "join", "watch"};
constexpr std::string_view kSportP[] = {"stadium", "track", "court", "pool"};
constexpr std::string_view kTechN[] = {"laptop",  "phone",   "router",          "backup",
                                       "printer", "update",  "keyboard",        "app",
                                       "battery", "monitor", "password manager"};
constexpr std::string_view kTechV[] = {"install", "update",    "fix",
                                       "restart", "configure", "charge"};
constexpr std::string_view kTechP[] = {"repair shop", "desk", "office"};
constexpr std::string_view kPetN[] = {"walk", "vet",    "leash",    "food bowl", "toy",
                                      "cage", "treats", "grooming", "collar"};
constexpr std::string_view kPetV[] = {"feed", "walk", "train", "groom", "adopt", "brush"};
constexpr std::string_view kPetP[] = {"park", "vet clinic", "pet shop"};
constexpr std::string_view kHomeN[] = {"roof",   "sofa",    "curtains", "shelves",
                                       "paint",  "heating", "plumber",  "boiler",
                                       "carpet", "balcony", "attic"};
constexpr std::string_view kHomeV[] = {"repair", "paint", "clean", "renovate", "decorate", "tidy"};
constexpr std::string_view kHomeP[] = {"flat", "basement", "living room"};

constexpr Topic kTopics[] = {
    {kTravelN, kTravelV, kTravelP}, {kCookN, kCookV, kCookP},    {kWorkN, kWorkV, kWorkP},
    {kFamilyN, kFamilyV, kFamilyP}, {kHobbyN, kHobbyV, kHobbyP}, {kGardenN, kGardenV, kGardenP},
    {kHealthN, kHealthV, kHealthP}, {kBooksN, kBooksV, kBooksP}, {kSportN, kSportV, kSportP},
    {kTechN, kTechV, kTechP},       {kPetN, kPetV, kPetP},       {kHomeN, kHomeV, kHomeP}};

constexpr std::string_view kUserSentences[] = {
    "Yesterday I tried to {verb} the {noun} at the {place}, and it was {adj}.",
    "Do you think I should {verb} the {noun} before {weekday}?",
    "My {rel} wants to {verb} the {noun} with {name} this {time}.",
    "I have been thinking about the {noun} and the {noun} all week.",
    "{name} told me the {noun} in {city} is {adj}.",
    "How can I {verb} the {noun} without spending too much?",
    "We went to the {place} on {weekday} {time} and it was {adj}.",
    "Honestly the {noun} has been {adj} lately, and I need to {verb} it soon.",
    "My {rel} took the {pet} to the {place} and came back with a new {noun}.",
    "Any tips for a {adj} {noun}? I have about {number} days.",
    "I still remember the {noun} we had in {city} years ago.",
    "Can you help me {verb} a {noun} for my {rel}?",
    "The {noun} my {rel} picked in {month} turned out {adj}.",
    "Our {pet} hates the {noun}, which makes every {time} {adj}."};
constexpr std::string_view kAssistantSentences[] = {
    "That sounds {adj}! It might help to {verb} the {noun} first.",
    "A {adj} {noun} usually depends on the {noun}, so start there.",
    "Good question. Many people {verb} the {noun} on {weekday}, when the {place} is quieter.",
    "If your {rel} is involved, ask {name} how they would {verb} the {noun}.",
    "Here is a simple plan: {verb} the {noun}, then look at the {noun}, and leave the rest.",
    "I understand. A {adj} {time} at the {place} can change a lot.",
    "{city} is known for its {noun}, so it could be worth a visit in {month}.",
    "Try to {verb} for {number} minutes a day and see how the {noun} feels.",
    "A {pet} needs routine, so plan the {noun} around it.",
    "Let me know how the {noun} goes, and whether the {place} was {adj}.",
    "You could also {verb} the {noun} together with your {rel}."};

// Fact subjects and values: unusual enough that only the planted turn holds them.
constexpr std::string_view kPetNames[] = {
    "Biscuit",  "Pemberton",   "Zanzibar", "Marmaduke", "Clementine", "Figaro",   "Nimbus",
    "Tiramisu", "Bartholomew", "Quince",   "Saffron",   "Jellybean",  "Rasputin", "Pistachio",
    "Gnocchi",  "Humbug",      "Mothball", "Octavia",   "Waffles",    "Lentil"};
constexpr std::string_view kRetreats[] = {"cabin",   "beach house", "lake house", "boat",
                                          "caravan", "ski chalet",  "farmhouse",  "treehouse"};
constexpr std::string_view kVehicles[] = {"van", "motorbike", "camper", "scooter", "hatchback"};
constexpr std::string_view kStorage[] = {"locker", "safe", "bike lock", "storage unit"};
constexpr std::string_view kVenues[] = {"gym", "pool", "station", "library", "climbing hall"};
constexpr std::string_view kProfessions[] = {"dentist", "physiotherapist", "accountant",
                                             "lawyer",  "optometrist",     "dermatologist",
                                             "vet",     "therapist"};
constexpr std::string_view kSurnames[] = {"Okonkwo",     "Lindqvist",    "Abernathy", "Castellanos",
                                          "Thistlewood", "Nakashima",    "Oyelaran",  "Kowalczyk",
                                          "Brannigan",   "Ferreira-Holt"};
constexpr std::string_view kBuildings[] = {"shed", "cottage", "garage", "workshop", "barn"};
constexpr std::string_view kHidingPlaces[] = {"under the blue flowerpot by the back door",
                                              "inside the hollow garden gnome",
                                              "behind the loose brick left of the gate",
                                              "in the birdhouse on the apple tree",
                                              "taped under the mailbox",
                                              "in the old boot on the porch"};
constexpr std::string_view kDishes[] = {"lasagne",      "chili",   "curry",    "pancakes",
                                        "banana bread", "goulash", "gazpacho", "shepherd's pie"};
constexpr std::string_view kIngredients[] = {"smoked paprika",       "a spoon of miso",
                                             "grated nutmeg",        "a dash of fish sauce",
                                             "candied ginger",       "a square of dark chocolate",
                                             "toasted fennel seeds", "preserved lemon"};
constexpr std::string_view kClubs[] = {"book club",     "chess club",    "choir",
                                       "running group", "pottery class", "quiz team"};
constexpr std::string_view kCodeWords[] = {"copperkettle", "bluegoose", "lanternfish",
                                           "mossgarden",   "velvetfox", "quietharbor",
                                           "amberwolf",    "tinroof"};

struct FactSlot {
  std::string_view name;
  Words words;
};
constexpr FactSlot kFactSlots[] = {{"rel", kRelatives},
                                   {"pet", kPets},
                                   {"petname", kPetNames},
                                   {"retreat", kRetreats},
                                   {"codeword", kCodeWords},
                                   {"month", kMonths},
                                   {"vehicle", kVehicles},
                                   {"name", kNames},
                                   {"storage", kStorage},
                                   {"venue", kVenues},
                                   {"job", kProfessions},
                                   {"surname", kSurnames},
                                   {"building", kBuildings},
                                   {"hiding", kHidingPlaces},
                                   {"city", kCities},
                                   {"dish", kDishes},
                                   {"ingredient", kIngredients},
                                   {"club", kClubs},
                                   {"weekday", kWeekdays}};

// One kind of fact: its subject (unique per generator), what the user says, the paraphrased
// question, and the answer (filled first; the statement holds it as {answer}).
struct FactTemplate {
  std::string_view subject, statement, question, answer;
};
constexpr FactTemplate kFactTemplates[] = {
    {"pet {rel} {pet}", "Oh, before I forget: my {rel}'s {pet} is called {answer}.",
     "What did I say my {rel}'s {pet}'s name was?", "{petname}"},
    {"wifi {retreat}", "The wifi password at the {retreat} is {answer}.",
     "Remind me, what's the wifi password for the {retreat}?", "{codeword}-{digits}"},
    {"birthday {rel}", "My {rel}'s birthday is on {answer}, write that down.",
     "When is my {rel}'s birthday?", "{month} {day}"},
    {"parking {vehicle}", "I parked the {vehicle} on {answer}.", "Where did I park the {vehicle}?",
     "level {level} of the {name} Street garage"},
    {"code {storage} {venue}", "The combination for my {storage} at the {venue} is {answer}.",
     "What was the code for my {storage} at the {venue}?", "{digits}"},
    {"doctor {job}", "My new {job} is {answer}, the one near the {venue}.",
     "What's the name of my {job}?", "Dr. {surname}"},
    {"key {building}", "I hid the spare key to the {building} {answer}.",
     "Where did I put the spare key for the {building}?", "{hiding}"},
    {"moving {rel}", "Big news: my {rel} is moving to {answer} in {month}.",
     "Which city is my {rel} moving to?", "{city}"},
    {"recipe {dish}", "The secret ingredient in my {dish} is {answer}.",
     "What's the secret in my {dish} again?", "{ingredient}"},
    {"club {club}", "Our {club} meets every {answer} now.", "When does my {club} meet these days?",
     "{weekday} at the {venue}"}};

}  // namespace

DialogueGenerator::DialogueGenerator(uint64_t seed) : rng_(seed) {}

std::string DialogueGenerator::Fill(std::string_view pattern,
                                    const std::map<std::string_view, std::string>* fixed) {
  const Topic& topic = kTopics[topic_];
  std::string out;
  while (!pattern.empty()) {
    const size_t open = pattern.find('{');
    out += pattern.substr(0, open);
    if (open == std::string_view::npos) break;
    const size_t close = pattern.find('}', open);
    const std::string_view slot = pattern.substr(open + 1, close - open - 1);
    pattern.remove_prefix(close + 1);
    if (fixed != nullptr) {
      const auto it = fixed->find(slot);
      KV_CHECK(it != fixed->end(), "dialogue template slot without a value");
      out += it->second;
      continue;
    }
    Words words = slot == "noun"      ? topic.nouns
                  : slot == "verb"    ? topic.verbs
                  : slot == "place"   ? topic.places
                  : slot == "rel"     ? Words(kRelatives)
                  : slot == "pet"     ? Words(kPets)
                  : slot == "name"    ? Words(kNames)
                  : slot == "city"    ? Words(kCities)
                  : slot == "weekday" ? Words(kWeekdays)
                  : slot == "month"   ? Words(kMonths)
                  : slot == "time"    ? Words(kTimes)
                  : slot == "number"  ? Words(kNumbers)
                                      : Words(kAdjectives);
    out += words[Pick(words.size())];
  }
  return out;
}

std::string DialogueGenerator::Sentence(bool user) {
  if (Pick(4) == 0) topic_ = Pick(std::size(kTopics));  // conversations drift
  return user ? Fill(kUserSentences[Pick(std::size(kUserSentences))])
              : Fill(kAssistantSentences[Pick(std::size(kAssistantSentences))]);
}

DialogueTurn DialogueGenerator::NextTurn() {
  DialogueTurn turn;
  const bool user = user_next_;
  user_next_ = !user_next_;
  turn.role = user ? memory::Role::kUser : memory::Role::kAssistant;
  if (user && turns_left_in_session_-- <= 0) {
    turns_left_in_session_ = 20 + static_cast<int>(Pick(60));
    topic_ = Pick(std::size(kTopics));
    turn.text = Fill("Hi again! It is {weekday} {time} here. ");
  }
  const size_t n_sentences = user ? 1 + Pick(3) : 2 + Pick(4);
  for (size_t i = 0; i < n_sentences; ++i) turn.text += (i > 0 ? " " : "") + Sentence(user);
  return turn;
}

std::map<std::string_view, std::string> DialogueGenerator::FactSlots() {
  std::map<std::string_view, std::string> slots;
  for (const FactSlot& slot : kFactSlots) {
    slots[slot.name] = std::string(slot.words[Pick(slot.words.size())]);
  }
  slots["digits"] = std::to_string(1000 + Pick(9000));
  slots["day"] = std::to_string(1 + Pick(28));
  slots["level"] = std::to_string(2 + Pick(7));
  return slots;
}

PlantedFact DialogueGenerator::MakeFact(std::string* subject) {
  const FactTemplate& kind = kFactTemplates[Pick(std::size(kFactTemplates))];
  std::map<std::string_view, std::string> slots = FactSlots();
  PlantedFact fact;
  fact.answer = Fill(kind.answer, &slots);
  slots["answer"] = fact.answer;
  fact.statement = Fill(kind.statement, &slots);
  fact.question = Fill(kind.question, &slots);
  *subject = Fill(kind.subject, &slots);
  return fact;
}

size_t DialogueGenerator::SubjectCount() {
  size_t total = 0;
  for (const FactTemplate& kind : kFactTemplates) {
    size_t n = 1;
    for (const FactSlot& slot : kFactSlots) {
      if (kind.subject.find("{" + std::string(slot.name) + "}") != std::string_view::npos) {
        n *= slot.words.size();
      }
    }
    total += n;
  }
  return total;
}

PlantedFact DialogueGenerator::NextFact() {
  KV_CHECK(used_subjects_.size() < SubjectCount(), "NextFact: every fact subject is used");
  while (true) {
    std::string subject;
    PlantedFact fact = MakeFact(&subject);
    if (used_subjects_.insert(subject).second) return fact;
  }
}

std::string DialogueGenerator::RandomQuestion() {
  std::string subject;
  return MakeFact(&subject).question;
}

}  // namespace kvault::testing
