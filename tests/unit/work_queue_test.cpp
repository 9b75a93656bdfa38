// util/work_queue.hpp: the byte budget, the first error, cancel; OrderedWork's order and budget.
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

TEST(OrderedWork, ResultsComeInTheOrderAddedWhateverOrderTheyEndIn) {
  OrderedWork<int> work(4, 1000);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(work.try_add(10, [i] {
      std::this_thread::sleep_for(std::chrono::milliseconds((8 - i) * 3));  // the later ones end first
      return i;
    }));
  }
  for (int i = 0; i < 8; ++i) EXPECT_EQ(work.take(), i);
  EXPECT_EQ(work.taken(), 8u);
}

TEST(OrderedWork, BytesStayHeldUntilTheResultIsTaken) {
  OrderedWork<int> work(2, 100);
  ASSERT_TRUE(work.try_add(60, [] { return 1; }));
  std::this_thread::sleep_for(20ms);  // the job has ended; its result waits for take()
  EXPECT_FALSE(work.try_add(60, [] { return 2; })) << "60 + 60 does not fit in 100 until the first is taken";
  EXPECT_EQ(work.take(), 1);
  ASSERT_TRUE(work.try_add(60, [] { return 2; }));
  EXPECT_EQ(work.take(), 2);
  EXPECT_TRUE(work.try_add(500, [] { return 3; })) << "nothing held: a job larger than the budget runs alone";
  EXPECT_EQ(work.take(), 3);
}

TEST(OrderedWork, TakeRethrowsTheFirstErrorEvenForAnEarlierJob) {
  OrderedWork<int> work(2, 1000);
  std::atomic<bool> go{false};
  ASSERT_TRUE(work.try_add(1, [&] {
    while (!go) std::this_thread::sleep_for(1ms);
    return 1;
  }));
  ASSERT_TRUE(work.try_add(1, []() -> int { throw Error(ErrorCode::io, "range 2 failed"); }));
  try {
    (void)work.take();
    ADD_FAILURE() << "take() returned although a job failed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_STREQ(e.what(), "range 2 failed");
  }
  go = true;
  EXPECT_FALSE(work.try_add(1, [] { return 3; })) << "a failed queue takes no more jobs";
}

}  // namespace
}  // namespace backupctl
