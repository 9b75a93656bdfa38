#include "util/signals.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

#include "util/error.hpp"

namespace backupctl {
namespace {

std::atomic<int> g_signal{0};
std::atomic<int> g_shield_depth{0};
int g_pipe[2] = {-1, -1};
thread_local const std::atomic<bool>* t_stop = nullptr;

bool stopped_here() { return t_stop != nullptr && t_stop->load(); }

void record(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
  if (g_pipe[1] >= 0) {
    const char c = 1;
    [[maybe_unused]] ssize_t n = ::write(g_pipe[1], &c, 1);
  }
}

void on_signal(int sig) {
  int saved = errno;
  record(sig);
  errno = saved;
}

// SIGPIPE is raised by any write to a pipe without a reader: our stdout/stderr (the operator's
// `| tee` or ssh went away: stop, like SIGTERM), or a child's stdin (pg_restore exited early: the
// write fails with EPIPE and the caller reports pg_restore's error). Only the first is a stop:
// poll() (async-signal-safe) tells whether fd 1 or 2 is the broken one.
void on_sigpipe(int) {
  int saved = errno;
  pollfd fds[2] = {{1, POLLOUT, 0}, {2, POLLOUT, 0}};
  if (::poll(fds, 2, 0) > 0) {
    for (const pollfd& p : fds) {
      if (p.revents & (POLLERR | POLLHUP)) {
        record(SIGPIPE);
        break;
      }
    }
  }
  errno = saved;
}

}  // namespace

void install_signal_handlers() {
  if (g_pipe[0] < 0 && ::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw_errno("cannot create the signal pipe");
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR and loops re-check
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::sigaction(sig, &sa, nullptr);
  sa.sa_handler = on_sigpipe;
  ::sigaction(SIGPIPE, &sa, nullptr);
  std::signal(SIGXFSZ, SIG_IGN);
}

int interrupt_signal() { return g_signal.load(); }

std::string signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    case SIGPIPE: return "SIGPIPE";
    default: return "signal " + std::to_string(sig);
  }
}

int interrupt_fd() { return g_shield_depth.load() > 0 ? -1 : g_pipe[0]; }

bool interrupt_pending() {
  return g_shield_depth.load() == 0 && (g_signal.load() != 0 || stopped_here());
}

InterruptShield::InterruptShield() { ++g_shield_depth; }
InterruptShield::~InterruptShield() { --g_shield_depth; }

void check_interrupted() {
  if (g_shield_depth.load() > 0) return;
  int sig = g_signal.load();
  if (sig != 0) {
    std::string hint = sig == SIGHUP ? "the terminal or SSH session went away; " : "";
    throw Error(ErrorCode::interrupted, "interrupted by " + signal_name(sig),
                hint + "what this run had begun was cleaned up or put back; run the command again "
                       "when ready (in tmux or screen if the session may drop)");
  }
  if (stopped_here()) throw Error(ErrorCode::interrupted, "stopped: the work this was for was given up");
}

StopScope::StopScope(const std::atomic<bool>* flag) : m_outer(t_stop) { t_stop = flag; }
StopScope::~StopScope() { t_stop = m_outer; }

const std::atomic<bool>* current_stop() { return t_stop; }

}  // namespace backupctl
