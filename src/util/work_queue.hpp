// A bounded work queue: jobs run side by side on a fixed set of threads while the bytes they hold
// stay under a budget. The objects restore's uploads use it; so can any producer that reads data
// into memory for workers to send (parts of a push, prefetched objects).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "util/signals.hpp"

namespace backupctl {

// The producer reserves a job's bytes before it reads them into memory (waiting for room), then
// submits the job; the bytes are released when the job ends. The first job that throws stops the
// queue: the jobs still queued are dropped, and reserve() and drain() say so from then on
// (failed(), first_error()). After a SIGINT or SIGTERM no job starts, and the waits end with
// Error(interrupted). The destructor drops what is queued and joins the threads.
class WorkQueue {
 public:
  // Throws Error(io) when a thread cannot be started (the ones started are stopped first).
  WorkQueue(int threads, std::uint64_t budget);
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Waits until `bytes` more fit in the budget (at once when nothing is held); false, reserving
  // nothing, once the queue has failed.
  bool reserve(std::uint64_t bytes);
  // reserve() without the wait: false when the bytes do not fit now or the queue has failed.
  bool try_reserve(std::uint64_t bytes);
  // Gives back bytes reserved and not handed to a job (a job submitted with 0 bytes leaves its
  // reserve held until then: see OrderedWork).
  void release(std::uint64_t bytes);
  // Queues `job`, which holds `bytes` of a reserve(). After a failure the job is dropped.
  void submit(std::uint64_t bytes, std::function<void()> job);
  // Waits until every queued job has run; false when one failed.
  bool drain();
  // Drops the queued jobs and waits for the running ones; never throws (cleanup paths).
  void cancel() noexcept;

  bool failed();
  std::exception_ptr first_error();

 private:
  struct Job {
    std::uint64_t bytes = 0;
    std::function<void()> run;
  };
  void work();
  void drop_queued();  // REQUIRES: m_mutex held

  const std::uint64_t m_budget;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<Job> m_queue;
  std::uint64_t m_held = 0;  // bytes reserved, queued and running
  int m_busy = 0;
  bool m_stop = false;
  std::exception_ptr m_error;
  std::vector<std::thread> m_threads;
};

// Jobs whose results are taken in the order they were added: they run side by side on a
// WorkQueue, and each job's bytes stay held until its result is taken, so the budget bounds what
// waits for the consumer as well as what is in flight. The consumer adds jobs ahead of itself
// with try_add() (it never waits for room: the room is freed by its own take()). A job that
// throws stops the queue; take() then rethrows the first error.
template <class T>
class OrderedWork {
 public:
  OrderedWork(int threads, std::uint64_t budget) : m_queue(threads, budget) {}

  // Queues job number added() when its bytes fit now (always when nothing is held).
  bool try_add(std::uint64_t bytes, std::function<T()> job) {
    std::unique_lock<std::mutex> lock(m_mutex);
    if (m_error || !m_queue.try_reserve(bytes)) return false;
    const std::size_t i = m_added++;
    m_slots.emplace_back(Slot{bytes, {}, false});
    lock.unlock();
    m_queue.submit(0, [this, i, job = std::move(job)] {
      try {
        T result = job();
        std::lock_guard<std::mutex> lock(m_mutex);
        Slot& slot = m_slots[i - m_taken];
        slot.result = std::move(result);
        slot.done = true;
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(m_mutex);
          if (!m_error) m_error = std::current_exception();
        }
        m_cv.notify_all();
        throw;
      }
      m_cv.notify_all();
    });
    return true;
  }

  // Waits for the oldest result not taken and hands it over. Throws Error(interrupted) after a
  // SIGINT or SIGTERM, or the first error of a job.
  T take() {
    std::unique_lock<std::mutex> lock(m_mutex);
    while (!m_cv.wait_for(lock, std::chrono::milliseconds(100),
                          [&] { return m_error || (!m_slots.empty() && m_slots.front().done); })) {
      lock.unlock();
      check_interrupted();
      lock.lock();
    }
    if (m_error) std::rethrow_exception(m_error);
    Slot slot = std::move(m_slots.front());
    m_slots.pop_front();
    ++m_taken;
    lock.unlock();
    m_queue.release(slot.bytes);
    return std::move(slot.result);
  }

  std::size_t added() const { return m_added; }
  std::size_t taken() const { return m_taken; }

 private:
  struct Slot {
    std::uint64_t bytes = 0;
    T result{};
    bool done = false;
  };
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<Slot> m_slots;  // from job number m_taken on
  std::size_t m_added = 0;   // the consumer's thread only
  std::size_t m_taken = 0;
  std::exception_ptr m_error;  // the first job's that threw
  WorkQueue m_queue;  // last: destroyed first, so no job outlives the slots
};

}  // namespace backupctl
