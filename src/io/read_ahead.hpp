// A source read ahead on a thread of its own, its bytes hashed there (sha256) and handed out in
// order. Checking an attachments tar spends half its CPU on the file's checksum and half on the
// entries' checksums: read ahead, the first runs beside the second instead of before it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/pipeline.hpp"
#include "util/progress.hpp"

namespace backupctl::io {

// Holds at most kBlocks + 2 blocks of kBlock bytes (queued, being filled, being read). An error of
// the source is rethrown by the read that reaches it.
class HashingReadAhead : public Source {
 public:
  HashingReadAhead(Source& in, Progress& progress);
  ~HashingReadAhead() override;
  HashingReadAhead(const HashingReadAhead&) = delete;
  HashingReadAhead& operator=(const HashingReadAhead&) = delete;

  std::size_t read(std::span<char> buf) override;
  // Reads what the consumer did not need (a tar's padding after its end-of-archive blocks) and
  // returns the sha256 of every byte of the source.
  std::string finish();
  std::uint64_t total() const { return m_total; }

 private:
  static constexpr std::size_t kBlock = 1 << 20;
  static constexpr std::size_t kBlocks = 4;

  void fill();
  bool next_block();

  Source& m_in;
  NullSink m_null;
  Sha256Sink m_sha;  // used by the reader thread only, until finish() joins it
  Progress& m_progress;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<std::vector<char>> m_ready;  // filled, in order
  std::vector<std::vector<char>> m_free;  // used, for reuse
  bool m_eof = false;
  bool m_stop = false;
  std::exception_ptr m_error;
  std::vector<char> m_block;  // the consumer's current block
  std::size_t m_pos = 0;
  std::uint64_t m_total = 0;
  std::thread m_thread;
};

}  // namespace backupctl::io
