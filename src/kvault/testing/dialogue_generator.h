// testing/dialogue_generator.h: synthetic long multi-session user/assistant dialogue for the
// memory benchmarks (`kvault bench memory`, `recall`, `reconnect`), deterministic for a seed.
// Sessions open with a greeting and wander over topics (travel, cooking, work, family,
// hobbies, gardening, health, books, sport, technology, pets, home) built from templates and
// word lists, so the vocabulary varies and everyday words (relatives, pets, places) recur in
// many turns, as they do in real chats. No external data.
//
// Planted facts ("My sister's dog is called Biscuit.") use unusual values and come with a
// question that paraphrases them ("What did I say my sister's dog's name was?"): the question
// names what the fact is about, never the value. Each fact's subject (which relative's
// which pet, which place's password, ...) is used once per generator.
//
// Thread-safety: one generator per thread.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>

#include "kvault/memory/token_store.h"

namespace kvault::testing {

struct DialogueTurn {
  memory::Role role = memory::Role::kUser;
  std::string text;
};

struct PlantedFact {
  std::string statement;  // what the user says, a turn of its own
  std::string question;   // asked much later; shares the subject, not the answer
  std::string answer;     // the value, for reports
};

class DialogueGenerator {
 public:
  explicit DialogueGenerator(uint64_t seed);

  // The next filler turn: user and assistant alternate, starting with the user.
  DialogueTurn NextTurn();
  // A fact with a subject not used before by this generator.
  // REQUIRES: fewer than SubjectCount() facts made so far.
  PlantedFact NextFact();
  // How many facts with distinct subjects a generator can make.
  static size_t SubjectCount();
  // A question in the style of NextFact()'s about a subject that may never have been
  // mentioned (for latency measurements).
  std::string RandomQuestion();

 private:
  std::string Sentence(bool user);
  // Replaces each {slot} of `pattern`: from `fixed` if given (it must hold every slot),
  // otherwise with a random word of the slot's list or of the current topic.
  std::string Fill(std::string_view pattern,
                   const std::map<std::string_view, std::string>* fixed = nullptr);
  std::map<std::string_view, std::string> FactSlots();
  PlantedFact MakeFact(std::string* subject);
  size_t Pick(size_t n) { return static_cast<size_t>(rng_() % n); }

  std::mt19937_64 rng_;
  bool user_next_ = true;
  int turns_left_in_session_ = 0;
  size_t topic_ = 0;
  std::set<std::string> used_subjects_;
};

}  // namespace kvault::testing
