#include "util/fault.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "util/error.hpp"

namespace backupctl {

void fault_point(std::string_view point) {
  static const char* log = std::getenv("BACKUPCTL_FAULT_LOG");
  static const char* fault = std::getenv("BACKUPCTL_FAULT");
  if (log && *log) {
    int fd = ::open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      std::string line = std::string(point) + "\n";
      [[maybe_unused]] ssize_t n = ::write(fd, line.data(), line.size());
      ::close(fd);
    }
  }
  if (!fault || !*fault) return;
  std::string_view want(fault);
  long nth = 1;
  if (auto hash = want.find('#'); hash != std::string_view::npos) {
    nth = std::strtol(std::string(want.substr(hash + 1)).c_str(), nullptr, 10);
    want = want.substr(0, hash);
  }
  if (want != point) return;
  static std::mutex mutex;
  static std::map<std::string, long, std::less<>> hits;
  std::lock_guard<std::mutex> lock(mutex);
  if (++hits[std::string(point)] != nth) return;
  static const char* sig = std::getenv("BACKUPCTL_FAULT_SIGNAL");
  std::string_view name = sig ? sig : "";
  if (name == "FAIL") {
    throw Error(ErrorCode::internal, "a failure injected at " + std::string(point) + " (BACKUPCTL_FAULT)",
                "this is a test hook: unset BACKUPCTL_FAULT");
  }
  ::kill(::getpid(), name == "TERM"   ? SIGTERM
                     : name == "HUP"  ? SIGHUP
                     : name == "INT"  ? SIGINT
                     : name == "STOP" ? SIGSTOP  // a test looks at the world, then sends SIGCONT
                                      : SIGKILL);
}

}  // namespace backupctl
