#include "io/pipeline.hpp"

#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "util/digest.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"

namespace backupctl::io {

std::size_t FdSource::read(std::span<char> buf) {
  for (;;) {
    check_interrupted();
    ssize_t n = ::read(m_fd, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) throw_errno("cannot read " + m_name);
  }
}

std::size_t ChildSource::read(std::span<char> buf) { return m_child.read_output(buf); }

void FdSink::write(std::span<const char> data) {
  write_all(m_fd, data.data(), data.size(), "cannot write to " + m_name);
}

void ChildStdinSink::write(std::span<const char> data) {
  if (m_closed || !m_pipe) return;
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(m_pipe.get(), p, left);
    if (n < 0) {
      if (errno == EINTR) {
        check_interrupted();
        continue;
      }
      if (errno == EPIPE) {
        m_closed = true;
        m_pipe.reset();
        return;
      }
      throw_errno("cannot write to " + m_name);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

void LimitSink::write(std::span<const char> data) {
  m_bytes += data.size();
  if (m_bytes > m_limit) {
    throw Error(ErrorCode::verification,
                m_what + " is larger than " + human_bytes(m_limit) + " (" + std::to_string(m_limit) + " bytes): not read",
                "it is not what backupctl writes there; check who else writes to that place");
  }
  m_next.write(data);
}

Sha256Sink::Sha256Sink(Sink& next) : m_next(next) {}

void Sha256Sink::write(std::span<const char> data) {
  m_digest.update(data);
  m_next.write(data);
}

void Sha256Sink::finish() {
  m_hex = m_digest.finish_hex();
  m_next.finish();
}

std::uint64_t copy(Source& source, Sink& sink, const ProgressFn& progress) {
  std::vector<char> buf(kChunkSize);
  std::uint64_t total = 0;
  for (;;) {
    check_interrupted();
    std::size_t n = source.read(buf);
    if (n == 0) break;
    sink.write(std::span<const char>(buf.data(), n));
    total += n;
    if (progress) progress(total);
    if (!sink.wants_more()) return total;
  }
  sink.finish();
  return total;
}

FileDigest digest_file(const std::string& path) {
  Fd fd = open_read(path);
  FdSource source(fd.get(), path);
  NullSink null;
  Sha256Sink sha(null);
  FileDigest d;
  d.size = copy(source, sha);
  d.sha256 = sha.hex();
  return d;
}

}  // namespace backupctl::io
