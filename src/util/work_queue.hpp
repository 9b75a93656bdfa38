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

}  // namespace backupctl
