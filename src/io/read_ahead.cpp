#include "io/read_ahead.hpp"

#include <algorithm>
#include <cstring>

namespace backupctl::io {

HashingReadAhead::HashingReadAhead(Source& in, Progress& progress) : m_in(in), m_sha(m_null), m_progress(progress) {
  m_thread = std::thread([this] { fill(); });
}

HashingReadAhead::~HashingReadAhead() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_stop = true;
  }
  m_cv.notify_all();
  if (m_thread.joinable()) m_thread.join();
}

std::size_t HashingReadAhead::read(std::span<char> buf) {
  std::size_t done = 0;
  while (done < buf.size()) {
    if (m_pos == m_block.size()) {
      if (!next_block()) break;
      continue;
    }
    std::size_t k = std::min(buf.size() - done, m_block.size() - m_pos);
    std::memcpy(buf.data() + done, m_block.data() + m_pos, k);
    m_pos += k;
    done += k;
  }
  m_total += done;
  m_progress.update(m_total);
  return done;
}

std::string HashingReadAhead::finish() {
  std::vector<char> buf(kBlock);
  while (read(buf) > 0) {
  }
  m_thread.join();  // it stopped at the end of the source
  m_sha.finish();
  return m_sha.hex();
}

// The reader thread: fills blocks until the source ends, fails, or the consumer goes away.
void HashingReadAhead::fill() {
  try {
    for (;;) {
      std::vector<char> block;
      {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_cv.wait(lock, [&] { return m_stop || m_ready.size() < kBlocks; });
        if (m_stop) return;
        if (!m_free.empty()) {
          block = std::move(m_free.back());
          m_free.pop_back();
        }
      }
      block.resize(kBlock);
      std::size_t n = m_in.read(block);
      block.resize(n);
      m_sha.write(std::span<const char>(block.data(), n));
      std::lock_guard<std::mutex> lock(m_mutex);
      if (n == 0) m_eof = true;
      else m_ready.push_back(std::move(block));
      m_cv.notify_all();
      if (n == 0) return;
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_error = std::current_exception();
    m_cv.notify_all();
  }
}

// Takes the next filled block (the used one goes back for reuse); false at the end.
bool HashingReadAhead::next_block() {
  std::unique_lock<std::mutex> lock(m_mutex);
  if (m_block.capacity() > 0) m_free.push_back(std::move(m_block));
  m_block = {};
  m_pos = 0;
  m_cv.notify_all();
  m_cv.wait(lock, [&] { return !m_ready.empty() || m_eof || m_error; });
  if (!m_ready.empty()) {
    m_block = std::move(m_ready.front());
    m_ready.pop_front();
    m_cv.notify_all();
    return true;
  }
  if (m_error) std::rethrow_exception(m_error);
  return false;
}

}  // namespace backupctl::io
