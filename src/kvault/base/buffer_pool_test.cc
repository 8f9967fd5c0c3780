#include "kvault/base/buffer_pool.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(BufferPoolTest, GivesBackTheSameStorageEmpty) {
  BufferPool pool(1, 1 << 20);
  std::vector<uint8_t> buffer(4096, 7);
  const uint8_t* storage = buffer.data();
  pool.Give(std::move(buffer));
  EXPECT_EQ(pool.kept_bytes(), 4096u);
  std::vector<uint8_t> again = pool.Take();
  EXPECT_TRUE(again.empty());
  EXPECT_EQ(again.capacity(), 4096u);
  EXPECT_EQ(again.data(), storage);
  EXPECT_EQ(pool.Take().capacity(), 0u);  // nothing left: a new, empty buffer
}

TEST(BufferPoolTest, KeepsAtMostItsCountAndNothingTooLarge) {
  BufferPool pool(2, 1000);
  pool.Give(std::vector<uint8_t>(1001));
  EXPECT_EQ(pool.kept_bytes(), 0u);
  pool.Give(std::vector<uint8_t>(100));
  pool.Give(std::vector<uint8_t>(200));
  pool.Give(std::vector<uint8_t>(300));
  EXPECT_EQ(pool.kept_bytes(), 300u);
  pool.Give(std::vector<uint8_t>());
  EXPECT_EQ(pool.kept_bytes(), 300u);
}

}  // namespace
}  // namespace kvault
