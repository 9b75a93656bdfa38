// A bounded parallel loop for I/O-bound work (HEAD requests, file checks).
#pragma once

#include <cstddef>
#include <functional>

namespace backupctl {

// Runs fn(i) for every i in [0, n) on `threads` threads. Stops handing out work after the first
// exception or a SIGINT/SIGTERM; rethrows the first exception (or Error(interrupted)).
void parallel_for(std::size_t n, int threads, const std::function<void(std::size_t)>& fn);

}  // namespace backupctl
