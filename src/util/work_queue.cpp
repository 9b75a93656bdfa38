#include "util/work_queue.hpp"

#include <chrono>
#include <string>

#include "util/error.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace {
// Waits wake up this often to notice SIGINT/SIGTERM: the handler cannot signal a condition.
constexpr auto kTick = std::chrono::milliseconds(100);
}  // namespace

WorkQueue::WorkQueue(int threads, std::uint64_t budget) : m_budget(budget) {
  try {
    for (int i = 0; i < std::max(1, threads); ++i) m_threads.emplace_back([this] { work(); });
  } catch (const std::exception& e) {  // std::system_error, or std::bad_alloc
    cancel();
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_stop = true;
    }
    m_cv.notify_all();
    for (auto& t : m_threads) t.join();
    throw Error(ErrorCode::io, std::string("cannot start a worker thread: ") + e.what(),
                "the host is out of memory or threads; try again when it is less busy");
  }
}

WorkQueue::~WorkQueue() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_stop = true;
    drop_queued();
  }
  m_cv.notify_all();
  for (auto& t : m_threads) t.join();
}

bool WorkQueue::reserve(std::uint64_t bytes) {
  std::unique_lock<std::mutex> lock(m_mutex);
  while (!m_cv.wait_for(lock, kTick, [&] { return m_held == 0 || m_held + bytes <= m_budget || m_error; })) {
    check_interrupted();
  }
  if (m_error) return false;
  m_held += bytes;
  return true;
}

bool WorkQueue::try_reserve(std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(m_mutex);
  if (m_error || (m_held != 0 && m_held + bytes > m_budget)) return false;
  m_held += bytes;
  return true;
}

void WorkQueue::release(std::uint64_t bytes) {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_held -= bytes;
  }
  m_cv.notify_all();
}

void WorkQueue::submit(std::uint64_t bytes, std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_error) {
      m_held -= bytes;
      return;
    }
    m_queue.push_back({bytes, std::move(job)});
  }
  m_cv.notify_all();
}

bool WorkQueue::drain() {
  std::unique_lock<std::mutex> lock(m_mutex);
  while (!m_cv.wait_for(lock, kTick, [&] { return m_queue.empty() && m_busy == 0; })) {
    check_interrupted();
  }
  return !m_error;
}

void WorkQueue::cancel() noexcept {
  std::unique_lock<std::mutex> lock(m_mutex);
  drop_queued();
  m_cv.wait(lock, [&] { return m_busy == 0; });
}

bool WorkQueue::failed() {
  std::lock_guard<std::mutex> lock(m_mutex);
  return static_cast<bool>(m_error);
}

std::exception_ptr WorkQueue::first_error() {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_error;
}

void WorkQueue::drop_queued() {
  for (const auto& job : m_queue) m_held -= job.bytes;
  m_queue.clear();
}

void WorkQueue::work() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(m_mutex);
      m_cv.wait(lock, [&] { return m_stop || !m_queue.empty(); });
      if (m_stop) return;
      if (interrupt_pending()) {
        // The producer hears of it in its next wait; nothing queued starts.
        drop_queued();
        m_cv.notify_all();
        continue;
      }
      job = std::move(m_queue.front());
      m_queue.pop_front();
      ++m_busy;
    }
    std::exception_ptr error;
    try {
      job.run();
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      --m_busy;
      m_held -= job.bytes;
      if (error && !m_error) {
        m_error = error;
        drop_queued();  // stop feeding a failing server
      }
    }
    m_cv.notify_all();
  }
}

}  // namespace backupctl
