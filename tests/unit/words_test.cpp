// util/words.hpp: command lines split as a shell would, without one.
#include <gtest/gtest.h>

#include "util/error.hpp"
#include "util/words.hpp"

namespace backupctl {

TEST(Words, SplitsLikeAShellWithoutRunningOne) {
  EXPECT_EQ(split_words("systemctl stop 'archive api' \"a \\\"b\\\"\" c\\ d $HOME", "X"),
            (std::vector<std::string>{"systemctl", "stop", "archive api", "a \"b\"", "c d", "$HOME"}));
  EXPECT_THROW(split_words("echo 'open", "SERVICE_STOP_CMD"), Error);
  EXPECT_THROW(split_words("   ", "SERVICE_STOP_CMD"), Error);
}

}  // namespace backupctl
