#include "util/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "util/error.hpp"
#include "util/signals.hpp"

extern char** environ;

namespace backupctl {

std::string ExitStatus::describe() const {
  if (signal != 0) {
    return "killed by signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
  }
  return "exit code " + std::to_string(code);
}

namespace {

std::vector<std::string> build_environment(const SpawnOptions& options) {
  std::map<std::string, std::string> vars;
  std::vector<std::string> order;
  for (char** e = environ; e && *e; ++e) {
    std::string entry(*e);
    auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    std::string key = entry.substr(0, eq);
    if (!vars.count(key)) order.push_back(key);
    vars[key] = entry.substr(eq + 1);
  }
  for (const auto& [key, value] : options.env) {
    if (value) {
      if (!vars.count(key)) order.push_back(key);
      vars[key] = *value;
    } else {
      vars.erase(key);
    }
  }
  std::vector<std::string> out;
  for (const auto& key : order) {
    auto it = vars.find(key);
    if (it != vars.end()) out.push_back(key + "=" + it->second);
  }
  return out;
}

// The program's path: argv[0] itself when it has a '/', else the first executable file of that
// name on our PATH (looked up here: between fork and exec only async-signal-safe calls are
// allowed).
std::string resolve_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    struct stat st{};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return "";
}

// In the child, between fork and exec: make `from` the child's descriptor `to` (or /dev/null
// when from < 0 and `null` is set). Async-signal-safe calls only.
bool child_redirect(int from, int to, bool null, int null_flags) {
  if (from < 0 && null) {
    int fd = ::open("/dev/null", null_flags);
    if (fd < 0) return false;
    from = fd;
  }
  if (from < 0) return true;  // inherit
  if (from == to) return ::fcntl(to, F_SETFD, 0) == 0;  // dup2 onto itself keeps FD_CLOEXEC
  return ::dup2(from, to) == to;
}

ExitStatus decode(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) {
    s.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
  }
  return s;
}

// The child's side of spawn(), between fork and exec: only async-signal-safe calls.
struct ChildStdio {
  int fd;     // -1: inherited, unless null
  bool null;  // /dev/null
};
[[noreturn]] void exec_in_child(pid_t parent, ChildStdio in, ChildStdio out, ChildStdio err,
                                const std::string& program, std::vector<char*>& argv, std::vector<char*>& envp,
                                int exec_error_fd, bool outlives_us) {
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGXFSZ}) ::sigaction(sig, &dfl, nullptr);
  // The child dies with us, even when we are killed with SIGKILL: no orphaned pg_restore keeps
  // loading a database nobody will use. (The death signal fires when the spawning thread ends:
  // children are spawned by threads that outlive them.)
  if (!outlives_us) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int e = 0;
  if (::getppid() != parent) ::_exit(127);
  if (!child_redirect(in.fd, 0, in.null, O_RDONLY) || !child_redirect(out.fd, 1, out.null, O_WRONLY) ||
      !child_redirect(err.fd, 2, err.null, O_WRONLY)) {
    e = errno;
  } else {
    ::execve(program.c_str(), argv.data(), envp.data());
    e = errno;
  }
  [[maybe_unused]] ssize_t n = ::write(exec_error_fd, &e, sizeof e);
  ::_exit(127);
}

// Reads the errno a child that could not exec sent (nothing: exec worked, the pipe closed on
// it) and throws it, the child reaped.
void check_exec(pid_t pid, int exec_error_fd, const std::string& argv0) {
  int child_errno = 0;
  ssize_t got;
  do {
    got = ::read(exec_error_fd, &child_errno, sizeof child_errno);
  } while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(sizeof child_errno)) return;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  Error e = errno_error(child_errno, "cannot run " + argv0);
  if (child_errno == ENOENT) {
    throw Error(ErrorCode::not_found, e.what(), "install it or put its directory on PATH (for PostgreSQL tools: PG_BINDIR)");
  }
  throw e;
}

}  // namespace

Child Child::spawn(const SpawnOptions& options) {
  if (options.argv.empty()) throw Error(ErrorCode::internal, "spawn: empty argv");
  Child child;
  child.m_name = options.argv[0];
  auto slash = child.m_name.rfind('/');
  if (slash != std::string::npos) child.m_name = child.m_name.substr(slash + 1);

  Pipe in_pipe, out_pipe, err_pipe;
  if (options.in_fd < 0 && options.in == Stdio::pipe) in_pipe = Pipe::create();
  if (options.out_fd < 0 && options.out == Stdio::pipe) out_pipe = Pipe::create();
  if (options.err_fd < 0 && options.err == Stdio::pipe) err_pipe = Pipe::create();
  const int in_fd = options.in_fd >= 0 ? options.in_fd : in_pipe.read ? in_pipe.read.get() : -1;
  const int out_fd = options.out_fd >= 0 ? options.out_fd : out_pipe.write ? out_pipe.write.get() : -1;
  const int err_fd = options.err_fd >= 0 ? options.err_fd : err_pipe.write ? err_pipe.write.get() : -1;
  const bool in_null = options.in_fd < 0 && options.in == Stdio::null;
  const bool out_null = options.out_fd < 0 && options.out == Stdio::null;
  const bool err_null = options.err_fd < 0 && options.err == Stdio::null;

  const std::string program = resolve_program(options.argv[0]);
  if (program.empty()) {
    throw Error(ErrorCode::not_found, "cannot run " + options.argv[0] + ": No such file or directory",
                "install it or put its directory on PATH (for PostgreSQL tools: PG_BINDIR)");
  }
  std::vector<std::string> env = build_environment(options);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = options.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The child tells us why exec failed through this pipe; it closes (exec-on-close) when exec works.
  Pipe exec_error = Pipe::create();

  // No signal may run our handlers in the child before exec (they write to the parent's
  // self-pipe): block everything across the fork; the child resets the dispositions and unblocks.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    exec_in_child(parent, {in_fd, in_null}, {out_fd, out_null}, {err_fd, err_null}, program, argv, envp,
                  exec_error.write.get(), options.outlives_us);
  }
  int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) throw errno_error(fork_errno, "cannot run " + options.argv[0] + " (fork)");
  exec_error.write.reset();
  check_exec(pid, exec_error.read.get(), options.argv[0]);
  child.m_pid = pid;
  child.m_in = std::move(in_pipe.write);
  child.m_out = std::move(out_pipe.read);
  child.m_err = std::move(err_pipe.read);
  return child;
}

Child::Child(Child&& other) noexcept
    : m_pid(std::exchange(other.m_pid, -1)),
      m_waited(other.m_waited),
      m_name(std::move(other.m_name)),
      m_in(std::move(other.m_in)),
      m_out(std::move(other.m_out)),
      m_err(std::move(other.m_err)),
      m_err_tail(std::move(other.m_err_tail)),
      m_status(other.m_status) {}

Child::~Child() {
  if (m_pid <= 0 || m_waited) return;
  m_in.reset();
  m_out.reset();
  m_err.reset();
  ::kill(m_pid, SIGTERM);
  int status = 0;
  for (int i = 0; i < 500; ++i) {  // up to 5 s for a clean exit
    pid_t r = ::waitpid(m_pid, &status, WNOHANG);
    if (r == m_pid || (r < 0 && errno != EINTR)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(m_pid, SIGKILL);
  while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
  }
}

void Child::kill(int sig) {
  if (m_pid > 0 && !m_waited) ::kill(m_pid, sig);
}

void Child::append_stderr(const char* data, std::size_t n) {
  m_err_tail.append(data, n);
  if (m_err_tail.size() > 2 * kStderrTail) {
    m_err_tail.erase(0, m_err_tail.size() - kStderrTail);
  }
}

std::size_t Child::read_output(std::span<char> buf) {
  if (!m_out) return 0;
  for (;;) {
    check_interrupted();
    pollfd fds[3];
    nfds_t n = 0;
    fds[n++] = {m_out.get(), POLLIN, 0};
    if (m_err) fds[n++] = {m_err.get(), POLLIN, 0};
    if (interrupt_fd() >= 0) fds[n++] = {interrupt_fd(), POLLIN, 0};
    int r = ::poll(fds, n, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll on " + m_name + " output");
    }
    if (m_err && fds[1].revents != 0) {
      char tmp[4096];
      ssize_t k = ::read(m_err.get(), tmp, sizeof tmp);
      if (k > 0) {
        append_stderr(tmp, static_cast<std::size_t>(k));
      } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
        m_err.reset();
      }
    }
    if (fds[0].revents != 0) {
      ssize_t k = ::read(m_out.get(), buf.data(), buf.size());
      if (k < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        throw_errno("cannot read the output of " + m_name);
      }
      if (k == 0) m_out.reset();
      return static_cast<std::size_t>(k);
    }
  }
}

bool Child::pump_stderr_only() {
  if (!m_err) return false;
  check_interrupted();
  pollfd fds[2] = {{m_err.get(), POLLIN, 0}, {interrupt_fd(), POLLIN, 0}};
  int r = ::poll(fds, interrupt_fd() >= 0 ? 2 : 1, -1);
  if (r < 0) {
    if (errno == EINTR) return true;
    throw_errno("poll on " + m_name + " stderr");
  }
  if (fds[0].revents == 0) return true;
  char tmp[4096];
  ssize_t k = ::read(m_err.get(), tmp, sizeof tmp);
  if (k > 0) {
    append_stderr(tmp, static_cast<std::size_t>(k));
    return true;
  }
  if (k < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  m_err.reset();
  return false;
}

std::string Child::drain(std::size_t max_out) {
  std::string out;
  char buf[65536];
  for (;;) {
    std::size_t n = read_output(buf);
    if (n == 0) break;
    if (out.size() < max_out) out.append(buf, std::min(n, max_out - out.size()));
  }
  return out;
}

ExitStatus Child::wait() {
  if (m_waited) return m_status;
  m_in.reset();
  while (pump_stderr_only()) {
  }
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(m_pid, &status, 0);
    if (r == m_pid) break;
    if (r < 0 && errno == EINTR) {
      check_interrupted();
      continue;
    }
    throw_errno("waitpid " + m_name);
  }
  m_waited = true;
  m_status = decode(status);
  return m_status;
}

std::optional<ExitStatus> Child::try_wait() {
  if (m_waited) return m_status;
  int status = 0;
  pid_t r = ::waitpid(m_pid, &status, WNOHANG);
  if (r == 0 || (r < 0 && errno == EINTR)) return std::nullopt;
  if (r != m_pid) throw_errno("waitpid " + m_name);
  m_waited = true;
  m_status = decode(status);
  return m_status;
}

bool Child::wait_for(std::chrono::milliseconds limit, std::chrono::milliseconds poll) noexcept {
  for (auto waited = std::chrono::milliseconds(0);; waited += poll) {
    try {
      if (try_wait()) return true;
    } catch (...) {
      return true;  // not ours to wait for any more
    }
    if (waited >= limit) return false;
    std::this_thread::sleep_for(poll);
  }
}

RunResult run_command(SpawnOptions options) {
  options.out = Stdio::pipe;
  options.err = Stdio::pipe;
  Child child = Child::spawn(options);
  RunResult result;
  result.out = child.drain();
  result.status = child.wait();
  result.err = child.stderr_tail();
  return result;
}

std::string first_line(std::string_view text) {
  auto nl = text.find('\n');
  std::string line(text.substr(0, nl));
  while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
  return line;
}

std::string error_line(std::string_view text) {
  std::size_t end = text.size();
  while (end > 0) {
    std::size_t start = text.rfind('\n', end - 1);
    std::size_t from = start == std::string_view::npos ? 0 : start + 1;
    std::string_view line = text.substr(from, end - from);
    if (line.find("error:") != std::string_view::npos || line.find("ERROR:") != std::string_view::npos ||
        line.find("FATAL:") != std::string_view::npos) {
      return first_line(line);
    }
    if (start == std::string_view::npos) break;
    end = start;
  }
  return last_lines(text, 1);
}

std::string last_lines(std::string_view text, std::size_t lines) {
  std::vector<std::string_view> kept;
  std::size_t end = text.size();
  while (end > 0 && kept.size() < lines) {
    std::size_t start = text.rfind('\n', end - 1);
    std::size_t from = start == std::string_view::npos ? 0 : start + 1;
    std::string_view line = text.substr(from, end - from);
    if (!line.empty()) kept.push_back(line);
    if (start == std::string_view::npos) break;
    end = start;
  }
  std::string out;
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) {
    if (!out.empty()) out += '\n';
    out += *it;
  }
  return out;
}

std::string machine_hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

namespace {
// "<boot>.<pid namespace>": what makes a pid mean one process. The boot id (its first 8 hex
// digits) tells machines and boots apart (the host's pid namespace has the same inode on every
// Linux machine; a folder can be shared over NFS); the namespace's inode tells containers of one
// kernel apart. "" when /proc cannot tell. Read once per process.
const std::string& pid_space() {
  static const std::string space = [] {
    struct stat st {};
    if (::stat("/proc/self/ns/pid", &st) != 0) return std::string();
    std::string boot;
    if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "re")) {
      char buf[64] = {};
      if (std::fgets(buf, sizeof buf, f)) boot = std::string(buf).substr(0, 8);
      std::fclose(f);
    }
    if (boot.size() != 8 || boot.find_first_not_of("0123456789abcdef") != std::string::npos) return std::string();
    return boot + "." + std::to_string(st.st_ino);
  }();
  return space;
}
}  // namespace

std::string run_tag() {
  return (pid_space().empty() ? "unknown.0" : pid_space()) + "." + std::to_string(::getpid());
}

bool run_is_here(std::string_view tag) {
  auto dot = tag.rfind('.');
  return !pid_space().empty() && dot != std::string_view::npos && tag.substr(0, dot) == pid_space();
}

bool run_is_gone(std::string_view tag) {
  if (!run_is_here(tag)) return false;
  std::string_view pid = tag.substr(tag.rfind('.') + 1);
  if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string_view::npos) return false;
  return ::kill(static_cast<pid_t>(std::stol(std::string(pid))), 0) != 0 && errno == ESRCH;
}

}  // namespace backupctl
