#include "util/parallel.hpp"

#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "util/signals.hpp"

namespace backupctl {

void parallel_for(std::size_t n, int threads, const std::function<void(std::size_t)>& fn) {
  std::atomic<std::size_t> next{0};
  std::mutex mutex;
  std::exception_ptr error;
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) {
    pool.emplace_back([&] {
      for (;;) {
        std::size_t i = next++;
        if (i >= n || interrupt_pending()) return;
        {
          std::lock_guard<std::mutex> lock(mutex);
          if (error) return;
        }
        try {
          fn(i);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!error) error = std::current_exception();
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  check_interrupted();
  if (error) std::rethrow_exception(error);
}

}  // namespace backupctl
