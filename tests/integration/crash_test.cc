// kill -9 under load, in make test: a few trials of `kvault bench crash` on the tiny model
// (the full run, with more trials, is in bench/RESULTS.md). Every turn a client received in
// full must be in the history after each restart, every restart must come up, and the
// first turn after it must succeed.
#include "tests/integration/subprocess.h"
#include "tests/test_env.h"
#include <gtest/gtest.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

TEST(CrashTest, AcknowledgedTurnsSurviveKillNine) {
  const ProcessResult run =
      RunProcess({KvaultBinary(), "bench", "crash", "--model", TestModelPath(), "--trials", "4",
                  "--conversations", "4", "--max-kill-seconds", "4", "--seed", "7", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Result<Json> report = ParseJson(run.out);
  ASSERT_TRUE(report.ok()) << run.out;
  const Json& r = *report;
  EXPECT_GT(r["acknowledged_turns"].get<int>(), 0) << run.out;  // slow builds (TSan) get few
  EXPECT_GE(r["acknowledged_turns_checked"].get<int>(), r["acknowledged_turns"].get<int>());
  EXPECT_EQ(r["turns_lost"].get<int>(), 0) << run.out;
  EXPECT_EQ(r["sessions_lost"].get<int>(), 0) << run.out;
  EXPECT_EQ(r["start_failures"].get<int>(), 0) << run.out;
  EXPECT_EQ(r["next_turn_failures"].get<int>(), 0) << run.out;
  EXPECT_GT(r["next_turns"].get<int>(), 0) << run.out;
}

}  // namespace
}  // namespace kvault::testing
