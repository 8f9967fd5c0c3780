// testing/planted_history.h: a long chat history (OpenAI messages) with one fact planted in
// it, for the long-conversation integration tests (long_memory_test, dense_search_test): the
// same filler for the same arguments, the fact at a turn the test chooses, and the question
// that recalls it. No model needed.
//
// Thread-safety: a pure function; safe from any thread.
#pragma once

#include "kvault/base/json.h"

namespace kvault::testing {

inline constexpr const char* kPlantedFact =
    "The combination of the blue garden locker is 4721, write it down.";
inline constexpr const char* kPlantedQuestion =
    "What is the combination of the blue garden locker?";

// Returns a system message, then `turns` alternating user/assistant messages of ~60 tokens
// of filler (deterministic), the fact at `fact_turn` (even: a user turn).
Json PlantedHistory(int turns, int fact_turn);

}  // namespace kvault::testing
