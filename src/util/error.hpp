// One error type for the whole tool: a code (which maps to the exit status), a one-line message
// naming what failed, and a hint saying what the operator can do about it.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace backupctl {

enum class ErrorCode {
  internal,               // a bug or an unexpected state
  usage,                  // bad arguments or invalid configuration
  connection,             // cannot reach or authenticate to a server
  not_found,              // a file, database or bucket that does not exist
  verification,           // a checksum or archive check failed
  io,                     // a local read/write failed (permissions, disk full, ...)
  tool_failed,            // an external program (pg_dump, pg_restore, ...) failed
  locked,                 // another backupctl run holds the lock
  confirmation_required,  // a destructive command ran without CONFIRM=YES
  stale,                  // `status`: the newest good backup of a kind is too old
  check_failed,           // the post-restore checklist (or a rehearsal) found a problem
  interrupted,            // SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE on our output
  repair_needed,          // an interrupted run's journal could not be repaired (`backupctl repair`)
  wrong_clock,            // `status`: a backup is dated ahead of this host's clock
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message, std::string hint = {})
      : std::runtime_error(std::move(message)), m_code(code), m_hint(std::move(hint)) {}

  ErrorCode code() const { return m_code; }
  const std::string& hint() const { return m_hint; }

 private:
  ErrorCode m_code;
  std::string m_hint;
};

// The process exit status for an error code; the table is documented in README.md.
int exit_status(ErrorCode code);

// Short stable name of a code, used in --json output ("io", "not_found", ...).
std::string_view error_code_name(ErrorCode code);

// Turns an errno value into an Error. `what` names the operation and the path involved, e.g.
// "cannot write /backups/db/x.dump.partial". The code and hint depend on errno: ENOSPC/EDQUOT/EFBIG
// become a disk-full error, EACCES/EPERM/EROFS a permission error, ENOENT not_found.
Error errno_error(int err, std::string_view what);

// errno_error(errno, what), for the common case right after a failed call.
[[noreturn]] void throw_errno(std::string_view what);

// Runs `fn`, whose failure must not fail the command (the retention after a backup, clearing
// what a killed run left): an Error is logged as a warning "<what>: <message>" and swallowed —
// except an interruption (a signal), which passes on. Returns whether `fn` completed.
bool best_effort(std::string_view what, const std::function<void()>& fn);

}  // namespace backupctl
