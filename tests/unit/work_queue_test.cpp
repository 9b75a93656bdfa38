// util/work_queue.hpp: the byte budget, the first error, cancel.
#include "util/work_queue.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "util/error.hpp"

namespace backupctl {
namespace {

using namespace std::chrono_literals;

TEST(WorkQueue, RunsEveryJobAndNeverHoldsMoreThanItsBudget) {
  WorkQueue queue(4, 100);
  std::atomic<int> held{0}, most{0}, ran{0};
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(queue.reserve(30));
    queue.submit(30, [&] {
      int now = held += 30;
      for (int m = most; now > m && !most.compare_exchange_weak(m, now);) {
      }
      std::this_thread::sleep_for(2ms);
      held -= 30;
      ++ran;
    });
  }
  EXPECT_TRUE(queue.drain());
  EXPECT_EQ(ran, 40);
  EXPECT_LE(most, 90) << "three jobs of 30 fit in 100, a fourth does not";
  EXPECT_GE(most, 60) << "jobs ran side by side";
}

TEST(WorkQueue, AJobLargerThanTheBudgetRunsAlone) {
  WorkQueue queue(2, 10);
  std::atomic<int> ran{0};
  ASSERT_TRUE(queue.reserve(50));
  queue.submit(50, [&] { ++ran; });
  ASSERT_TRUE(queue.reserve(50)) << "it waits for the first to end, then fits";
  queue.submit(50, [&] { ++ran; });
  EXPECT_TRUE(queue.drain());
  EXPECT_EQ(ran, 2);
}

TEST(WorkQueue, TheFirstErrorStopsTheQueueAndIsKept) {
  WorkQueue queue(1, 1000);
  std::atomic<int> ran{0};
  std::atomic<bool> go{false};
  ASSERT_TRUE(queue.reserve(1));
  queue.submit(1, [&] {
    while (!go) std::this_thread::sleep_for(1ms);
    throw std::runtime_error("first");
  });
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(queue.reserve(1));
    queue.submit(1, [&] {
      ++ran;
      throw std::runtime_error("later");
    });
  }
  go = true;
  EXPECT_FALSE(queue.drain());
  EXPECT_TRUE(queue.failed());
  EXPECT_EQ(ran, 0) << "the jobs queued behind the failure are dropped";
  try {
    std::rethrow_exception(queue.first_error());
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "first");
  }
  EXPECT_FALSE(queue.reserve(1)) << "nothing more is taken";
  queue.submit(0, [&] { ++ran; });
  EXPECT_FALSE(queue.drain());
  EXPECT_EQ(ran, 0);
}

TEST(WorkQueue, CancelDropsTheQueuedJobsAndWaitsForTheRunningOne) {
  WorkQueue queue(1, 1000);
  std::atomic<bool> started{false}, finished{false};
  std::atomic<int> others{0};
  ASSERT_TRUE(queue.reserve(1));
  queue.submit(1, [&] {
    started = true;
    std::this_thread::sleep_for(50ms);
    finished = true;
  });
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(queue.reserve(1));
    queue.submit(1, [&] { ++others; });
  }
  while (!started) std::this_thread::sleep_for(1ms);
  queue.cancel();
  EXPECT_TRUE(finished) << "cancel returns after the running job";
  EXPECT_TRUE(queue.drain());
  EXPECT_EQ(others, 0);
  EXPECT_FALSE(queue.failed()) << "a cancel is not a failure";
  ASSERT_TRUE(queue.reserve(1000)) << "the dropped jobs' bytes were given back";
  queue.submit(1000, [&] { ++others; });
  EXPECT_TRUE(queue.drain());
  EXPECT_EQ(others, 1);
}

}  // namespace
}  // namespace backupctl
