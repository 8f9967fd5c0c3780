#include "kvault/conversation/kv_source.h"

#include <gtest/gtest.h>

namespace kvault::conversation {
namespace {

KvSourceOptions Options(size_t own, size_t shared, size_t stored) {
  return {.policy = RestorePolicy::kAuto,
          .own = own,
          .shared = shared,
          .stored = stored,
          .restore_seconds = 0.010,
          .prefill_seconds_per_token = 0.001};
}

TEST(KvSourceTest, TheLongestPrefixWinsAndTiesGoToTheCheaperSource) {
  EXPECT_EQ(ChooseKvSource(Options(0, 0, 0)).source, KvSource::kNone);
  EXPECT_EQ(ChooseKvSource(Options(100, 100, 100)).source, KvSource::kOwn);
  EXPECT_EQ(ChooseKvSource(Options(50, 100, 100)).source, KvSource::kShared);
  const KvSourceChoice restore = ChooseKvSource(Options(50, 60, 1000));
  EXPECT_EQ(restore.source, KvSource::kRestore);
  EXPECT_EQ(restore.n_tokens, 1000u);
  EXPECT_FALSE(restore.recompute_chosen);
}

TEST(KvSourceTest, ARestoreMustBeatPrefillingWhatTheDeviceLacks) {
  // 10 ms to read against 5 missing tokens at 1 ms each: prefill them on top of own cells.
  const KvSourceChoice choice = ChooseKvSource(Options(995, 0, 1000));
  EXPECT_EQ(choice.source, KvSource::kOwn);
  EXPECT_EQ(choice.n_tokens, 995u);
  EXPECT_TRUE(choice.recompute_chosen);
  // The shared sequence counts as the device's offer too.
  EXPECT_EQ(ChooseKvSource(Options(0, 995, 1000)).source, KvSource::kShared);
  // --restore always restores whenever the store has more.
  KvSourceOptions always = Options(995, 0, 1000);
  always.policy = RestorePolicy::kAlways;
  EXPECT_EQ(ChooseKvSource(always).source, KvSource::kRestore);
}

TEST(KvSourceTest, NeverReusesNothing) {
  KvSourceOptions never = Options(100, 200, 300);
  never.policy = RestorePolicy::kNever;
  const KvSourceChoice choice = ChooseKvSource(never);
  EXPECT_EQ(choice.source, KvSource::kNone);
  EXPECT_EQ(choice.n_tokens, 0u);
}

}  // namespace
}  // namespace kvault::conversation
