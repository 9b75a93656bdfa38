// The streaming pipeline: a Source is copied once into a chain of Sinks. Observers (sha256, byte
// count) look at the bytes and pass them on unchanged; transformers (zstd) change them; the last
// sink stores them (an atomic file). A command composes the chain, runs copy(), then reads the
// observers' results. Memory is one buffer per stage, whatever the stream's size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>

#include "util/digest.hpp"
#include "util/fd.hpp"

namespace backupctl {

class Child;

namespace io {

class Source {
 public:
  virtual ~Source() = default;
  // Fills up to buf.size() bytes; returns 0 at the end of the stream.
  virtual std::size_t read(std::span<char> buf) = 0;
};

class Sink {
 public:
  virtual ~Sink() = default;
  virtual void write(std::span<const char> data) = 0;
  // End of the stream: flush what is buffered and finish the next sink.
  virtual void finish() {}
  // False once nothing downstream needs more bytes (a child that stopped reading its stdin);
  // copy() then stops early. Filters answer for the sink they feed.
  virtual bool wants_more() const { return true; }
};

// Reads a file descriptor it does not own.
class FdSource : public Source {
 public:
  explicit FdSource(int fd, std::string name) : m_fd(fd), m_name(std::move(name)) {}
  std::size_t read(std::span<char> buf) override;

 private:
  int m_fd;
  std::string m_name;
};

// A child's stdout (its stderr is collected by the Child meanwhile).
class ChildSource : public Source {
 public:
  explicit ChildSource(Child& child) : m_child(child) {}
  std::size_t read(std::span<char> buf) override;

 private:
  Child& m_child;
};

// Reports the bytes read through it.
class ProgressSource : public Source {
 public:
  ProgressSource(Source& in, std::function<void(std::uint64_t)> fn) : m_in(in), m_fn(std::move(fn)) {}
  std::size_t read(std::span<char> buf) override {
    std::size_t n = m_in.read(buf);
    m_total += n;
    if (m_fn) m_fn(m_total);
    return n;
  }

 private:
  Source& m_in;
  std::function<void(std::uint64_t)> m_fn;
  std::uint64_t m_total = 0;
};

// Writes to a file descriptor it does not own (a pipe to a child, /dev/null).
class FdSink : public Sink {
 public:
  explicit FdSink(int fd, std::string name) : m_fd(fd), m_name(std::move(name)) {}
  void write(std::span<const char> data) override;

 private:
  int m_fd;
  std::string m_name;
};

// Feeds a child's stdin. A child may stop reading before the end (pg_restore --list reads only
// the table of contents): from then on the rest is discarded and closed_early() is true.
class ChildStdinSink : public Sink {
 public:
  explicit ChildStdinSink(Fd& pipe, std::string name) : m_pipe(pipe), m_name(std::move(name)) {}
  void write(std::span<const char> data) override;
  void finish() override { m_pipe.reset(); }
  bool wants_more() const override { return !m_closed; }
  bool closed_early() const { return m_closed; }

 private:
  Fd& m_pipe;
  std::string m_name;
  bool m_closed = false;
};

// Passes every byte to two sinks.
class TeeSink : public Sink {
 public:
  TeeSink(Sink& a, Sink& b) : m_a(a), m_b(b) {}
  void write(std::span<const char> data) override {
    m_a.write(data);
    m_b.write(data);
  }
  void finish() override {
    m_a.finish();
    m_b.finish();
  }
  bool wants_more() const override { return m_a.wants_more() || m_b.wants_more(); }

 private:
  Sink& m_a;
  Sink& m_b;
};

class NullSink : public Sink {
 public:
  void write(std::span<const char>) override {}
};

class StringSink : public Sink {
 public:
  void write(std::span<const char> data) override { m_data.append(data.data(), data.size()); }
  const std::string& data() const { return m_data; }
  std::string take() { return std::exchange(m_data, {}); }

 private:
  std::string m_data;
};

// Observer: SHA-256 of every byte that passes.
class Sha256Sink : public Sink {
 public:
  explicit Sha256Sink(Sink& next);
  void write(std::span<const char> data) override;
  void finish() override;
  bool wants_more() const override { return true; }  // the digest needs every byte
  // Lowercase hex digest. REQUIRES: finish() was called.
  const std::string& hex() const { return m_hex; }

 private:
  Sink& m_next;
  Digest m_digest{DigestKind::sha256};
  std::string m_hex;
};

// Observer: counts bytes.
class CountSink : public Sink {
 public:
  explicit CountSink(Sink& next) : m_next(next) {}
  void write(std::span<const char> data) override {
    m_bytes += data.size();
    m_next.write(data);
  }
  void finish() override { m_next.finish(); }
  bool wants_more() const override { return m_next.wants_more(); }
  std::uint64_t bytes() const { return m_bytes; }

 private:
  Sink& m_next;
  std::uint64_t m_bytes = 0;
};

// Passes on at most `limit` bytes; more is Error(verification) naming `what` (a small file
// someone else wrote, read into memory: a meta, a roles file).
class LimitSink : public Sink {
 public:
  LimitSink(Sink& next, std::uint64_t limit, std::string what) : m_next(next), m_limit(limit), m_what(std::move(what)) {}
  void write(std::span<const char> data) override;
  void finish() override { m_next.finish(); }

 private:
  Sink& m_next;
  std::uint64_t m_limit;
  std::string m_what;
  std::uint64_t m_bytes = 0;
};

// Called during copy() with the number of bytes read from the source so far.
using ProgressFn = std::function<void(std::uint64_t)>;

// Copies `source` to `sink` until the end of the source, then calls sink.finish(). Stops early,
// without finish(), when the sink wants no more. Returns the bytes read. Checks for SIGINT/SIGTERM
// between chunks.
std::uint64_t copy(Source& source, Sink& sink, const ProgressFn& progress = {});

// Size of the buffers the pipeline moves data in.
inline constexpr std::size_t kChunkSize = 1 << 20;

// SHA-256 (hex) of a whole file and its size, read once.
struct FileDigest {
  std::uint64_t size = 0;
  std::string sha256;
};
FileDigest digest_file(const std::string& path);

}  // namespace io
}  // namespace backupctl
