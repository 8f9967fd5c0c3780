// A long chat history with one fact planted in it, shared by the long-conversation tests.
#pragma once

#include "kvault/base/json.h"

namespace kvault::testing {

inline constexpr const char* kPlantedFact =
    "The combination of the blue garden locker is 4721, write it down.";
inline constexpr const char* kPlantedQuestion =
    "What is the combination of the blue garden locker?";

// A system message, then `turns` alternating user/assistant messages of ~60 tokens of filler
// (deterministic), the fact at `fact_turn` (even: a user turn).
Json PlantedHistory(int turns, int fact_turn);

}  // namespace kvault::testing
