#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "util/error.hpp"
#include "util/signals.hpp"

namespace backupctl {
namespace {

// A StopScope's flag stops the thread that holds it (and those it hands it to), nobody else; a
// shield (cleanup that must finish) keeps it out as it keeps out signals.
TEST(StopScope, StopsOnlyTheThreadsThatCarryIt) {
  std::atomic<bool> flag{false};
  StopScope scope(&flag);
  EXPECT_FALSE(interrupt_pending());
  EXPECT_NO_THROW(check_interrupted());
  flag = true;
  EXPECT_TRUE(interrupt_pending());
  try {
    check_interrupted();
    ADD_FAILURE() << "a set flag did not stop its thread";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::interrupted);
  }
  bool other_stopped = true, carried_stopped = false;
  std::thread other([&] { other_stopped = interrupt_pending(); });
  other.join();
  EXPECT_FALSE(other_stopped) << "another thread's work was stopped";
  std::thread carried([&, stop = current_stop()] {
    StopScope carry(stop);
    carried_stopped = interrupt_pending();
  });
  carried.join();
  EXPECT_TRUE(carried_stopped) << "a thread working for the stopped one ran on";
  {
    InterruptShield shield;
    EXPECT_FALSE(interrupt_pending());
    EXPECT_NO_THROW(check_interrupted());
  }
  {
    StopScope inner(nullptr);
    EXPECT_FALSE(interrupt_pending()) << "an inner scope without a flag";
  }
  EXPECT_TRUE(interrupt_pending()) << "the outer scope's flag after the inner one ended";
}

}  // namespace
}  // namespace backupctl
