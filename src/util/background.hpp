// A function run on a thread of its own beside the caller's work (the WAL receiver beside the
// archiving of what it received; the WAL staged beside a restore's replay), asked to stop through
// a flag it checks, its failure handed back to the caller.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <system_error>
#include <thread>

#include "util/error.hpp"

namespace backupctl {

class BackgroundTask {
 public:
  // Starts fn(stop) at once; fn should return soon after `stop` turns true.
  explicit BackgroundTask(std::function<void(const std::atomic<bool>& stop)> fn) : m_fn(std::move(fn)) {
    try {
      m_thread = std::thread([this] {
        try {
          m_fn(m_stop);
        } catch (...) {
          m_failure = std::current_exception();
        }
        m_ended = true;
      });
    } catch (const std::system_error& e) {
      throw Error(ErrorCode::internal, std::string("cannot start a thread: ") + e.what(), "the system is out of threads or memory");
    }
  }
  ~BackgroundTask() {  // an exception on the caller's side: stop it, and wait
    stop();
    join();
  }
  BackgroundTask(const BackgroundTask&) = delete;
  BackgroundTask& operator=(const BackgroundTask&) = delete;

  void stop() { m_stop = true; }
  bool ended() const { return m_ended; }
  // Waits for the function's end (what it threw stays for rethrow()).
  void join() {
    if (m_thread.joinable()) m_thread.join();
  }
  // Throws what the function threw, once it ended; nothing before.
  void rethrow() const {
    if (m_ended && m_failure) std::rethrow_exception(m_failure);
  }

 private:
  std::function<void(const std::atomic<bool>&)> m_fn;
  std::atomic<bool> m_stop{false};
  std::atomic<bool> m_ended{false};
  std::exception_ptr m_failure;  // written before m_ended
  std::thread m_thread;          // last: started once the rest is set
};

}  // namespace backupctl
