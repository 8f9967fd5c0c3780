#include "kvault/testing/planted_history.h"

#include <random>
#include <string>

namespace kvault::testing {

Json PlantedHistory(int turns, int fact_turn) {
  static const char* kWords[] = {"weather", "train",  "coffee", "meeting", "garden",
                                 "cousin",  "market", "bread",  "rain",    "bicycle",
                                 "museum",  "letter", "dinner", "window",  "holiday"};
  std::mt19937 rng(3);
  Json messages = Json::array();
  messages.push_back({{"role", "system"}, {"content", "You are a patient assistant."}});
  for (int turn = 0; turn < turns; ++turn) {
    std::string text;
    for (int w = 0; w < 40; ++w) text += std::string(w ? " " : "") + kWords[rng() % 15];
    messages.push_back({{"role", turn % 2 ? "assistant" : "user"},
                        {"content", turn == fact_turn ? kPlantedFact : text}});
  }
  return messages;
}

}  // namespace kvault::testing
