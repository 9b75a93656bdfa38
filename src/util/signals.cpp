#include "util/signals.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <string>

#include "util/error.hpp"

namespace backupctl {
namespace {

std::atomic<int> g_signal{0};
int g_shield_depth = 0;
int g_pipe[2] = {-1, -1};

void on_signal(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
  if (g_pipe[1] >= 0) {
    const char c = 1;
    [[maybe_unused]] ssize_t n = ::write(g_pipe[1], &c, 1);
  }
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
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGXFSZ, SIG_IGN);
}

int interrupt_signal() { return g_signal.load(); }

int interrupt_fd() { return g_shield_depth > 0 ? -1 : g_pipe[0]; }

InterruptShield::InterruptShield() { ++g_shield_depth; }
InterruptShield::~InterruptShield() { --g_shield_depth; }

void check_interrupted() {
  if (g_shield_depth > 0) return;
  int sig = g_signal.load();
  if (sig != 0) {
    throw Error(ErrorCode::interrupted,
                std::string("interrupted by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"),
                "nothing was left half-written; run the command again when ready");
  }
}

}  // namespace backupctl
