// Child processes started by argv (fork + exec, never through a shell). Secrets go to children
// through environment overrides, never on the command line. Every child gets PR_SET_PDEATHSIG:
// it is killed when backupctl dies, even by SIGKILL, so nothing keeps working on our behalf.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "util/fd.hpp"

namespace backupctl {

struct ExitStatus {
  int code = -1;   // exit code when the process exited normally
  int signal = 0;  // the signal that killed it, or 0
  bool ok() const { return signal == 0 && code == 0; }
  // "exit code 1", "killed by signal 9 (Killed)".
  std::string describe() const;
};

enum class Stdio { inherit, null, pipe };

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  // Environment changes on top of ours: a value sets the variable, nullopt removes it.
  std::vector<std::pair<std::string, std::optional<std::string>>> env;
  Stdio in = Stdio::null;
  Stdio out = Stdio::pipe;
  Stdio err = Stdio::pipe;
  int in_fd = -1;   // when >= 0, the child's stdin (overrides `in`)
  int out_fd = -1;  // when >= 0, the child's stdout (overrides `out`)
  int err_fd = -1;  // when >= 0, the child's stderr (overrides `err`)
  // Children die with us, even when we are killed with SIGKILL; one that must act when we are
  // gone (the synchronous guard of `wal stream`) outlives us.
  bool outlives_us = false;
};

// A running child. If it is destroyed before wait() returned, it is sent SIGTERM, given a few
// seconds, then SIGKILL, and reaped: no orphans, no zombies, whatever path unwinds the caller.
class Child {
 public:
  static Child spawn(const SpawnOptions& options);

  Child(Child&& other) noexcept;
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child();

  pid_t pid() const { return m_pid; }
  const std::string& name() const { return m_name; }
  Fd& stdin_pipe() { return m_in; }

  // Reads from the child's stdout into `buf`, meanwhile collecting its stderr (the last
  // kStderrTail bytes are kept). Returns 0 at end of stdout. Throws Error(interrupted) when a
  // signal arrives while waiting. Requires out == Stdio::pipe.
  std::size_t read_output(std::span<char> buf);

  // Reads stdout and stderr to their end (stdout is kept up to max_out bytes, the rest discarded),
  // then waits for the exit.
  std::string drain(std::size_t max_out = 64u << 20);

  // Waits for the exit, draining stderr first if it is a pipe.
  ExitStatus wait();
  // The exit status when the child has ended, else nullopt at once (for a child whose output
  // goes to files, not pipes).
  std::optional<ExitStatus> try_wait();
  // try_wait() every `poll` until the child ended or `limit` passed: whether it ended (or can no
  // longer be waited for). Never throws: for stops that kill what is still running next.
  bool wait_for(std::chrono::milliseconds limit, std::chrono::milliseconds poll) noexcept;

  void kill(int sig);

  // The last bytes the child wrote to stderr (when err == Stdio::pipe).
  const std::string& stderr_tail() const { return m_err_tail; }

  static constexpr std::size_t kStderrTail = 16 * 1024;

 private:
  Child() = default;
  void append_stderr(const char* data, std::size_t n);
  bool pump_stderr_only();  // false at stderr EOF

  pid_t m_pid = -1;
  bool m_waited = false;
  std::string m_name;
  Fd m_in, m_out, m_err;
  std::string m_err_tail;
  ExitStatus m_status;
};

struct RunResult {
  ExitStatus status;
  std::string out;
  std::string err;
};

// Runs a command to completion and returns its status and output (stderr: the tail).
RunResult run_command(SpawnOptions options);

// This machine's host name ("" when it cannot be read), recorded in metas, state and notifications.
std::string machine_hostname();

// The first line of `text` with trailing spaces removed; for one-line error messages.
std::string first_line(std::string_view text);

// The most telling line of a program's stderr: the last one with "error:", "ERROR:" or "FATAL:",
// else the last non-empty line.
std::string error_line(std::string_view stderr_text);

// The last `lines` non-empty lines of `text`, joined with "\n".
std::string last_lines(std::string_view text, std::size_t lines);

// "<boot id>.<pid namespace>.<pid>" of this process (e.g. "3f2a9c1e.4026531836.4242"): in the
// names of a run's scratch folders, so that the next run can tell a killed run's leftovers from
// those of a live run. A pid alone cannot: two containers sharing BACKUP_DIR or the postgres
// service each have their own pid 42, and so do two hosts sharing a folder over NFS.
std::string run_tag();
// Whether the run that `tag` (from run_tag) names is gone: a tag of this boot and pid namespace
// whose pid no longer exists. A tag of another machine or namespace, or anything malformed, is
// never known to be gone.
bool run_is_gone(std::string_view tag);
// Whether `tag` names a run of this boot and pid namespace (one whose liveness can be told).
bool run_is_here(std::string_view tag);

}  // namespace backupctl
