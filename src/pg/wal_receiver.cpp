#include "pg/wal_receiver.hpp"

#include <endian.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

// The server's clock in the protocol: microseconds since 2000-01-01 UTC.
std::int64_t pg_now() {
  using namespace std::chrono;
  const auto us = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
  return us - 946684800LL * 1000000LL;
}

std::uint64_t get64(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return be64toh(v);
}

void put64(std::string& out, std::uint64_t v) {
  v = htobe64(v);
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

struct CopyBuffer {
  void operator()(char* p) const { PQfreemem(p); }
};

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

constexpr auto kFeedbackEvery = std::chrono::seconds(10);  // pg_receivewal's --status-interval
constexpr int kStopCheckMs = 100;

}  // namespace

WalReceiver::WalReceiver(PgConnection conn, fs::path dir, std::string slot, std::uint64_t segment_size, bool synchronous)
    : m_conn(std::move(conn)), m_dir(std::move(dir)), m_slot(std::move(slot)), m_segment_size(segment_size),
      m_synchronous(synchronous) {}

[[noreturn]] static void connection_lost(PGconn* conn, const std::string& what) {
  throw Error(ErrorCode::connection, what + ": " + first_line(PQerrorMessage(conn)),
              "the receiver connects again by itself; `backupctl status` shows whether it runs");
}

void WalReceiver::fetch_history(std::uint32_t timeline) {
  // The history of the timeline streamed, as pg_receivewal keeps it: a restore to a moment on it
  // needs the file. The name is ours, not the server's.
  Result r(PQexec(m_conn.get(), fmt::format("TIMELINE_HISTORY {}", timeline).c_str()));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1 || PQnfields(r.get()) != 2) {
    connection_lost(m_conn.get(), fmt::format("TIMELINE_HISTORY {} failed", timeline));
  }
  const std::string name = fmt::format("{:08X}.history", timeline);
  write_file_atomic(m_dir / name, std::string_view(PQgetvalue(r.get(), 0, 1), static_cast<std::size_t>(PQgetlength(r.get(), 0, 1))));
}

StreamEnd WalReceiver::run(const WalStreamStart& start, const std::atomic<bool>& stop) {
  m_timeline = start.timeline;
  m_written = m_flushed = start.position;
  if (m_timeline > 1) fetch_history(m_timeline);
  const std::string command = fmt::format("START_REPLICATION SLOT \"{}\" PHYSICAL {} TIMELINE {}", m_slot,
                                          format_lsn(start.position), start.timeline);
  {
    Result r(PQexec(m_conn.get(), command.c_str()));
    if (PQresultStatus(r.get()) != PGRES_COPY_BOTH) connection_lost(m_conn.get(), "START_REPLICATION failed");
  }
  PGconn* conn = m_conn.get();
  // Sends never block this thread: on a network that went away a blocking send would hold it (and
  // a stop) until TCP gives up; a status update that cannot go now goes with the next one.
  if (PQsetnonblocking(conn, 1) != 0) connection_lost(conn, "cannot make the replication connection non-blocking");
  m_last_flush = m_last_feedback = std::chrono::steady_clock::now();
  struct Closer {
    WalReceiver& r;
    ~Closer() {
      if (r.m_fd >= 0) ::close(r.m_fd);
      r.m_fd = -1;
    }
  } closer{*this};
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    const bool unflushed = m_written > m_flushed;
    if (stop.load()) {
      flush();
      send_feedback();
      return StreamEnd::stopped;
    }
    char* raw = nullptr;
    const int n = PQgetCopyData(conn, &raw, 1);
    std::unique_ptr<char, CopyBuffer> buf(raw);
    if (n > 0) {
      const std::size_t size = static_cast<std::size_t>(n);
      if (raw[0] == 'w' && size >= 25) {
        on_data(get64(raw + 1), raw + 25, size - 25);
      } else if (raw[0] == 'k' && size >= 18) {
        if (raw[17] != 0) send_feedback();  // the server asks where we are
      } else {
        throw Error(ErrorCode::connection, fmt::format("the server sent a replication message of an unknown kind ({:#04x}, {} bytes)",
                                                       static_cast<unsigned char>(raw[0]), size));
      }
      // A busy server never leaves the socket empty: the group flush is due by the clock too.
      if (m_written > m_flushed && now - m_last_flush >= kGroupFlush) flush(), send_feedback();
      continue;
    }
    if (n == -2) connection_lost(conn, "the replication stream broke");
    if (n == -1) {
      // The server ended the stream (shutting down, or its timeline ended): what arrived is kept.
      flush();
      if (PQputCopyEnd(conn, nullptr) <= 0 || PQflush(conn) != 0) connection_lost(conn, "cannot end the replication stream");
      std::string error;
      while (Result r{PQgetResult(conn)}) {
        if (PQresultStatus(r.get()) == PGRES_FATAL_ERROR) error = first_line(PQresultErrorMessage(r.get()));
      }
      if (!error.empty()) {
        throw Error(ErrorCode::connection, "the server ended the replication stream: " + error,
                    "the receiver connects again by itself; `backupctl status` shows whether it runs");
      }
      return StreamEnd::server_ended;
    }
    // Nothing to read: flush what is waiting when its group is due, then wait for the socket.
    int wait_ms = kStopCheckMs;
    if (unflushed) {
      const auto due = m_synchronous ? now : m_last_flush + kGroupFlush;
      if (now >= due) {
        flush();
        send_feedback();
        continue;
      }
      wait_ms = std::min<int>(wait_ms, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(due - now).count()));
    }
    if (now - m_last_feedback >= kFeedbackEvery) send_feedback();
    if (PQflush(conn) < 0) connection_lost(conn, "cannot send the receiver's position");  // what is still queued
    struct pollfd p{PQsocket(conn), POLLIN, 0};
    if (::poll(&p, 1, wait_ms) < 0 && errno != EINTR) throw_errno("poll on the replication connection");
    if (PQconsumeInput(conn) == 0) connection_lost(conn, "the replication connection broke");
  }
}

void WalReceiver::on_data(Lsn start, const char* data, std::size_t size) {
  if (start != m_written) {
    throw Error(ErrorCode::connection,
                fmt::format("the server sent WAL at {} where {} was next", format_lsn(start), format_lsn(m_written)),
                "the receiver connects again by itself and resumes from what it kept");
  }
  while (size > 0) {
    if (m_fd < 0) open_segment(m_written);
    const std::uint64_t offset = m_written % m_segment_size;
    const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(size, m_segment_size - offset));
    std::size_t done = 0;
    while (done < chunk) {
      const ssize_t w = ::pwrite(m_fd, data + done, chunk - done, static_cast<off_t>(offset + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw_errno("cannot write " + (m_dir / (m_segment.str(m_segment_size) + ".partial")).string());
      done += static_cast<std::size_t>(w);
    }
    m_written += chunk;
    data += chunk;
    size -= chunk;
    if (m_written % m_segment_size == 0) close_segment();
  }
}

void WalReceiver::open_segment(Lsn at) {
  m_segment = segment_of(at, m_timeline, m_segment_size);
  const fs::path path = m_dir / (m_segment.str(m_segment_size) + ".partial");
  // incoming/ is the receiver's (0700, its lock held), but what is under the name is not trusted: a
  // symlink or anything but a file is put aside, never written through.
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
  struct stat st{};
  if (!fd ? errno == ELOOP : (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))) {
    fd.reset();
    spdlog::warn("wal: {} is not a file the receiver wrote; kept as {}.rejected", path.string(), path.filename().string());
    std::error_code ec;
    fs::rename(path, fs::path(path.string() + ".rejected"), ec);
    if (ec) throw Error(ErrorCode::io, "cannot move " + path.string() + " aside: " + ec.message());
    fd = Fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  }
  if (!fd) throw_errno("cannot open " + path.string());
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + path.string());
  if (static_cast<std::uint64_t>(st.st_size) != m_segment_size) {
    // Zero-filled to its full size before any WAL goes in, as PostgreSQL and pg_receivewal do:
    // the group fsyncs then write data only (fdatasync, no size change), and a crash leaves zeros
    // after the last durable byte, where replay stops.
    if (::ftruncate(fd.get(), 0) != 0) throw_errno("cannot truncate " + path.string());
    const std::vector<char> zeros(1u << 20, 0);
    for (std::uint64_t left = m_segment_size; left > 0;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, zeros.size()));
      write_all(fd.get(), zeros.data(), n, "cannot write " + path.string());
      left -= n;
    }
    if (::fsync(fd.get()) != 0) throw_errno("cannot fsync " + path.string());
    fsync_dir(m_dir);
  }
  m_fd = fd.release();
}

void WalReceiver::close_segment() {
  const std::string name = m_segment.str(m_segment_size);
  if (::fdatasync(m_fd) != 0) throw_errno("cannot fsync " + (m_dir / (name + ".partial")).string());
  ::close(m_fd);
  m_fd = -1;
  std::error_code ec;
  fs::rename(m_dir / (name + ".partial"), m_dir / name, ec);
  if (ec) throw Error(ErrorCode::io, "cannot rename " + (m_dir / (name + ".partial")).string() + ": " + ec.message());
  fsync_dir(m_dir);
  m_flushed = m_written;
  m_last_flush = std::chrono::steady_clock::now();
  send_feedback();
}

void WalReceiver::flush() {
  if (m_written <= m_flushed) return;
  if (m_fd >= 0 && ::fdatasync(m_fd) != 0) {
    throw_errno("cannot fsync " + (m_dir / (m_segment.str(m_segment_size) + ".partial")).string());
  }
  m_flushed = m_written;
  m_last_flush = std::chrono::steady_clock::now();
}

void WalReceiver::send_feedback() {
  // Standby status update: written, flushed (what the slot may let go of), applied (none).
  std::string msg = "r";
  put64(msg, m_written);
  put64(msg, m_flushed);
  put64(msg, 0);
  put64(msg, static_cast<std::uint64_t>(pg_now()));
  msg.push_back(0);  // no reply wanted
  // Non-blocking: 0 means the send buffer is full (the next update says more), PQflush 1 that
  // some of it is still queued (sent by the next flush).
  if (PQputCopyData(m_conn.get(), msg.data(), static_cast<int>(msg.size())) < 0 || PQflush(m_conn.get()) < 0) {
    connection_lost(m_conn.get(), "cannot send the receiver's position");
  }
  m_last_feedback = std::chrono::steady_clock::now();
}

WalStreamStart wal_stream_start(const std::vector<std::string>& kept, const std::optional<std::string>& partial,
                                std::uint32_t server_timeline, Lsn server_position, std::optional<Lsn> slot_restart,
                                std::uint64_t segment_size) {
  std::optional<Lsn> local;
  for (const auto& name : kept) {
    if (auto s = parse_wal_segment_name(name, segment_size); s && s->timeline == server_timeline) {
      local = std::max(local.value_or(0), (s->segno + 1) * segment_size);
    }
  }
  if (partial) {
    if (auto s = parse_wal_segment_name(*partial, segment_size); s && s->timeline == server_timeline) {
      local = std::max(local.value_or(0), s->start(segment_size));
    }
  }
  if (local && *local <= server_position) return {server_timeline, *local};
  const Lsn from = slot_restart.value_or(server_position);
  return {server_timeline, from - from % segment_size};
}

}  // namespace backupctl
