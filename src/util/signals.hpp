// SIGINT/SIGTERM handling. The handlers only record the signal and write to a self-pipe; the
// long-running loops (process I/O, copies) watch interrupt_fd() in poll() and call
// check_interrupted(), which throws Error(interrupted). Unwinding then runs every RAII cleanup:
// children are killed and reaped, .partial files removed, stopped services started again.
#pragma once

namespace backupctl {

// Installs the handlers (without SA_RESTART) and ignores SIGPIPE and SIGXFSZ, so a closed pipe or
// a file-size limit shows up as EPIPE/EFBIG errors instead of killing the process.
void install_signal_handlers();

// The signal number received (SIGINT or SIGTERM), or 0.
int interrupt_signal();

// Readable once a signal arrived; for poll().
int interrupt_fd();

// Throws Error(ErrorCode::interrupted) when a signal arrived.
void check_interrupted();

// While one exists, check_interrupted() does nothing and interrupt_fd() returns -1: cleanup that
// must finish after a signal (starting services again, dropping a side database) runs under it.
class InterruptShield {
 public:
  InterruptShield();
  ~InterruptShield();
  InterruptShield(const InterruptShield&) = delete;
  InterruptShield& operator=(const InterruptShield&) = delete;
};

}  // namespace backupctl
