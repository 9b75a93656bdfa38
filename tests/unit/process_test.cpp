#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>

#include "util/error.hpp"
#include "util/process.hpp"

namespace backupctl {

TEST(Process, RunsByArgvWithoutAShell) {
  // A shell would expand the $HOME and the glob; argv passes them literally.
  RunResult r = run_command({.argv = {"echo", "$HOME", "*"}});
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(r.out, "$HOME *\n");
}

TEST(Process, EnvironmentOverridesReachTheChild) {
  ::setenv("BACKUPCTL_TEST_REMOVED", "present", 1);
  RunResult r = run_command({.argv = {"sh", "-c", "echo \"$SECRET_VALUE|${BACKUPCTL_TEST_REMOVED:-gone}\""},
                             .env = {{"SECRET_VALUE", "s3cret"}, {"BACKUPCTL_TEST_REMOVED", std::nullopt}}});
  EXPECT_EQ(r.out, "s3cret|gone\n");
}

TEST(Process, ReportsExitCodesSignalsAndStderr) {
  RunResult r = run_command({.argv = {"sh", "-c", "echo oops >&2; exit 3"}});
  EXPECT_FALSE(r.status.ok());
  EXPECT_EQ(r.status.code, 3);
  EXPECT_EQ(r.err, "oops\n");
  EXPECT_EQ(r.status.describe(), "exit code 3");
  RunResult k = run_command({.argv = {"sh", "-c", "kill -9 $$"}});
  EXPECT_EQ(k.status.signal, 9);
  EXPECT_NE(k.status.describe().find("signal 9"), std::string::npos);
}

TEST(Process, MissingProgramIsNotFound) {
  try {
    run_command({.argv = {"/nonexistent/pg_dump"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::not_found);
  }
}

TEST(Process, KeepsOnlyTheTailOfLongStderr) {
  RunResult r = run_command(
      {.argv = {"sh", "-c", "i=0; while [ $i -lt 5000 ]; do echo line $i >&2; i=$((i+1)); done"}});
  EXPECT_TRUE(r.status.ok());
  EXPECT_LE(r.err.size(), 2 * Child::kStderrTail);
  EXPECT_NE(r.err.find("line 4999"), std::string::npos);
  EXPECT_EQ(last_lines(r.err, 1), "line 4999");
}

TEST(Process, AnAbandonedChildIsKilledAndReaped) {
  pid_t pid;
  auto start = std::chrono::steady_clock::now();
  {
    Child c = Child::spawn({.argv = {"sleep", "30"}});
    pid = c.pid();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  // Reaped: the pid no longer exists (not even as a zombie of ours).
  EXPECT_EQ(::kill(pid, 0), -1);
}

TEST(Process, FirstAndLastLines) {
  EXPECT_EQ(first_line("one  \ntwo"), "one");
  EXPECT_EQ(last_lines("a\nb\n\nc\n", 2), "b\nc");
  EXPECT_EQ(last_lines("", 3), "");
}

}  // namespace backupctl
