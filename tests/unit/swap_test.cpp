// pg/swap.hpp: what a swap cut short left, judged from the names on the server alone.
#include "pg/swap.hpp"

#include <gtest/gtest.h>

namespace backupctl {
namespace {

TEST(SettleSwap, EveryCombinationOfTheThreeNamesIsJudged) {
  struct Case {
    bool live, side, previous;
    SwapFound found;
  };
  const Case cases[] = {
      // The transaction committed: the side database took the live name, the old one is previous.
      {true, false, true, SwapFound::committed},
      // ... into a server that had no live database before: nothing to keep.
      {true, false, false, SwapFound::committed},
      // It did not: the side database is still there beside the live one.
      {true, true, false, SwapFound::not_committed},
      {true, true, true, SwapFound::not_committed},
      // Renames made one at a time, cut between them: the live name is empty, the old database
      // waits under previous, whatever became of the side.
      {false, false, true, SwapFound::live_name_empty},
      {false, true, true, SwapFound::live_name_empty},
      // No live database before the restore and none now: nothing to put back.
      {false, true, false, SwapFound::none},
      {false, false, false, SwapFound::none},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(judge_swap(c.live, c.side, c.previous), c.found)
        << "live " << c.live << ", side " << c.side << ", previous " << c.previous;
  }
}

}  // namespace
}  // namespace backupctl
