// Signal handling. SIGINT, SIGTERM, SIGHUP (an SSH session that drops), SIGQUIT and a SIGPIPE on
// our own stdout/stderr (the reader of our output went away) all mean "stop": the handlers only
// record the signal and write to a self-pipe; the long-running loops (process I/O, copies) watch
// interrupt_fd() in poll() and call check_interrupted(), which throws Error(interrupted).
// Unwinding then runs every cleanup: children are killed and reaped, .partial files removed,
// stopped services started again, the journal's pending entries walked back.
#pragma once

#include <atomic>
#include <string>

namespace backupctl {

// Installs the handlers (without SA_RESTART). SIGPIPE from writing to a child's pipe is not a
// stop: the write fails with EPIPE and the caller reports the child's own error. SIGXFSZ is
// ignored, so a file-size limit shows up as EFBIG.
void install_signal_handlers();

// The signal number received, or 0.
int interrupt_signal();

// A signal arrived and no InterruptShield is up: what loops and transfer callbacks that must not
// throw test to stop (cleanup under a shield, an abort of an upload, runs to its end).
bool interrupt_pending();

// "SIGHUP", "SIGTERM", ...
std::string signal_name(int sig);

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

// A stop for one piece of work rather than the whole run: while a StopScope is up in a thread,
// interrupt_pending() and check_interrupted() there also report `*flag` once someone set it (a
// restore that gave up while its download thread runs on: the download's transfers then end
// within a second, where a slow or stalled server would hold them for minutes). Threads that
// work for that thread carry it on: StopScope(current_stop()).
class StopScope {
 public:
  explicit StopScope(const std::atomic<bool>* flag);
  ~StopScope();
  StopScope(const StopScope&) = delete;
  StopScope& operator=(const StopScope&) = delete;

 private:
  const std::atomic<bool>* m_outer;
};

// The flag of this thread's innermost StopScope, or null.
const std::atomic<bool>* current_stop();

}  // namespace backupctl
