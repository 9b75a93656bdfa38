#include "storage/remote.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "storage/s3/s3_store.hpp"
#include "util/digest.hpp"
#include "util/encoding.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/fs.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDirs[] = {"db", "objects", "config", "sets"};

// A remote name is "<db|objects|config|sets>/<file>": one plain file name below one of the four
// folders (or the owner record at the root). A listing is input someone else may have written:
// anything else is not ours.
bool plain_name(const std::string& name) {
  if (name == kRemoteOwnerName) return true;
  auto slash = name.find('/');
  if (slash == std::string::npos) return false;
  std::string dir = name.substr(0, slash), file = name.substr(slash + 1);
  bool known = false;
  for (const char* d : kDirs) known = known || dir == d;
  return known && !file.empty() && file != "." && file != ".." && file.find('/') == std::string::npos &&
         file.find('\0') == std::string::npos && file.find('\\') == std::string::npos;
}

void require_plain(const std::string& name) {
  if (!plain_name(name)) {
    throw Error(ErrorCode::internal, "not a remote backup name: " + name, "this is a bug in backupctl");
  }
}

// Starts `n` threads running `worker`. A thread that cannot be made (out of memory or threads)
// stops the ones already running and is a clear error, not std::terminate in a destructor.
template <class Worker, class Stop>
void start_workers(std::vector<std::thread>& workers, std::uint64_t n, Worker& worker, Stop& stop) {
  try {
    workers.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) workers.emplace_back(worker);
  } catch (const std::exception& e) {  // std::system_error, or std::bad_alloc
    stop();
    throw Error(ErrorCode::io, std::string("cannot start a transfer thread: ") + e.what(),
                "the host is out of memory or threads; try again when it is less busy");
  }
}

std::string hex_of(const std::string& raw) {
  return hex_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}
std::string base64_raw(const std::string& raw) {
  return base64_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

// pread() until `n` bytes are read (or the end of the file).
std::size_t read_at(int fd, char* buf, std::size_t n, std::uint64_t offset, const fs::path& file) {
  std::size_t got = 0;
  while (got < n) {
    ssize_t k = ::pread(fd, buf + got, n - got, static_cast<off_t>(offset + got));
    if (k < 0) {
      if (errno == EINTR) {
        check_interrupted();
        continue;
      }
      throw_errno("cannot read " + file.string());
    }
    if (k == 0) break;
    got += static_cast<std::size_t>(k);
  }
  return got;
}

std::uint64_t size_of(int fd, const fs::path& file) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno("cannot stat " + file.string());
  return static_cast<std::uint64_t>(st.st_size);
}

Error changed_since(const fs::path& local) {
  return Error(ErrorCode::verification,
               local.filename().string() + " does not match the sha256 of its meta: not copied off-site",
               "the local file is damaged or changed since the backup; `backupctl verify " + local.string() + "`");
}

// Holds back a writer to `rate` bytes per second (0: no limit).
class Throttle {
 public:
  explicit Throttle(std::uint64_t rate) : m_rate(rate), m_start(std::chrono::steady_clock::now()) {}
  void sent(std::uint64_t n) {
    if (m_rate == 0) return;
    m_total += n;
    auto due = m_start + std::chrono::microseconds(m_total * 1000000 / m_rate);
    auto now = std::chrono::steady_clock::now();
    if (due > now) std::this_thread::sleep_until(due);
  }

 private:
  std::uint64_t m_rate;
  std::chrono::steady_clock::time_point m_start;
  std::uint64_t m_total = 0;
};

// One range of a download, held in memory: exactly the size expected, or an error. The buffer
// is kept between ranges.
struct ChunkSink : io::Sink {
  explicit ChunkSink(const std::string& name) : name(name) {}
  ChunkSink(const ChunkSink& other) : io::Sink(), name(other.name) {}
  void expect(std::uint64_t n) {
    size = n;
    data.clear();
    data.reserve(n);
  }
  void write(std::span<const char> d) override {
    if (data.size() + d.size() > size) throw short_or_long();
    data.append(d.data(), d.size());
  }
  void check_whole() const {
    if (data.size() != size) throw short_or_long();
  }
  Error short_or_long() const {
    return Error(ErrorCode::tool_failed, fmt::format("{}: the server did not send the {} bytes of a range", name, size),
                 "run again");
  }
  std::string name;
  std::uint64_t size = 0;
  std::string data;
};

class S3Remote : public Remote {
 public:
  explicit S3Remote(const RemoteConfig& c) : m_config(c) {
    S3Settings s;
    s.endpoint = c.endpoint;
    s.access_key = c.access_key;
    s.secret_key = c.secret_key;
    s.region = c.region;
    s.ca_file = c.ca_file;
    s.names = {"BACKUP_REMOTE_ENDPOINT", "BACKUP_REMOTE_ACCESS_KEY", "BACKUP_REMOTE_SECRET_KEY", "BACKUP_REMOTE_REGION",
               "BACKUP_REMOTE_URL"};
    // The limit is per transfer; parts go kThreads at a time.
    s.max_send_speed = c.bwlimit == 0 ? 0 : std::max<std::uint64_t>(1, c.bwlimit / kThreads);
    m_store = std::make_unique<S3Store>(std::move(s));
  }

  std::string describe() const override { return m_config.url; }

  std::map<std::string, RemoteFile> list() override {
    std::map<std::string, RemoteFile> out;
    m_store->list_objects(m_config.bucket, m_config.prefix, [&](const ObjectEntry& e) {
      std::string name = e.key.substr(m_config.prefix.size());
      if (!plain_name(name)) return;
      out[name] = RemoteFile{name, e.size, e.etag};
    });
    return out;
  }

  PutResult put(const fs::path& local, const std::string& name, const std::string& sha256,
                std::atomic<std::uint64_t>& sent) override {
    require_plain(name);
    const std::string key = m_config.prefix + name;
    Fd fd = open_read(local);
    const std::uint64_t size = size_of(fd.get(), local);
    PutOptions options;
    options.storage_class = m_config.storage_class;
    if (m_config.object_lock_days > 0) {
      options.lock_until = iso8601_utc(Clock::now() + std::chrono::hours(24) * m_config.object_lock_days);
    }
    if (size <= kRemoteSinglePut) return put_small(fd.get(), local, key, size, sha256, options, sent);
    return put_parts(fd.get(), local, key, size, sha256, options, sent);
  }

  // A large file comes in kGetChunk ranges, kThreads at a time (one GET stream from RGW gives
  // ~200 MB/s here, less than the disk and the restore after it), handed to the sink in order,
  // through kGetBuffers buffers allocated once (so memory stays at their size: freed and
  // allocated again per range, 8 MiB blocks pile up in the threads' malloc arenas). Each range
  // names the ETag the HEAD answered, so a file replaced meanwhile is refused, not mixed from
  // two versions.
  void get(const std::string& name, io::Sink& sink) override {
    require_plain(name);
    const std::string key = m_config.prefix + name;
    ObjectInfo info = m_store->head_object(m_config.bucket, key);
    if (info.size <= kRemoteSinglePut) {
      m_store->get_object(m_config.bucket, key, sink);
      return;
    }
    const std::uint64_t chunks = (info.size + kGetChunk - 1) / kGetChunk;
    std::vector<ChunkSink> buffers(kGetBuffers, ChunkSink(name));
    std::vector<ChunkSink*> free_buffers;
    for (auto& b : buffers) free_buffers.push_back(&b);
    std::mutex mutex;
    std::condition_variable cv;
    std::map<std::uint64_t, ChunkSink*> ready;
    std::uint64_t next_to_take = 0;
    std::exception_ptr failure;
    const std::atomic<bool>* caller_stop = current_stop();
    auto worker = [&] {
      StopScope stop_with_the_caller(caller_stop);  // a caller that gives up ends the ranges in flight
      for (;;) {
        std::uint64_t i;
        ChunkSink* chunk;
        {
          std::unique_lock<std::mutex> lock(mutex);
          cv.wait(lock, [&] { return failure || next_to_take >= chunks || !free_buffers.empty(); });
          if (failure || next_to_take >= chunks) return;
          i = next_to_take++;
          chunk = free_buffers.back();
          free_buffers.pop_back();
        }
        try {
          check_interrupted();
          const std::uint64_t first = i * kGetChunk, last = std::min(info.size, first + kGetChunk) - 1;
          chunk->expect(last - first + 1);
          m_store->get_range(m_config.bucket, key, first, last, *chunk, info.etag);
          chunk->check_whole();
          std::lock_guard<std::mutex> lock(mutex);
          ready.emplace(i, chunk);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!failure) failure = std::current_exception();
        }
        cv.notify_all();
      }
    };
    std::vector<std::thread> workers;
    auto stop = [&] {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (!failure) failure = std::make_exception_ptr(Error(ErrorCode::internal, "stopped"));
      }
      cv.notify_all();
      for (auto& t : workers) t.join();
    };
    start_workers(workers, std::min<std::uint64_t>(kThreads, chunks), worker, stop);
    try {
      for (std::uint64_t next = 0; next < chunks; ++next) {
        ChunkSink* chunk;
        {
          std::unique_lock<std::mutex> lock(mutex);
          cv.wait(lock, [&] { return failure || ready.count(next); });
          if (failure) std::rethrow_exception(failure);
          chunk = ready[next];
          ready.erase(next);
        }
        sink.write(std::span<const char>(chunk->data.data(), chunk->data.size()));
        fault_point("remote.chunk-fetched");
        check_interrupted();  // the ranges in flight may all be on their way already
        {
          std::lock_guard<std::mutex> lock(mutex);
          free_buffers.push_back(chunk);
        }
        cv.notify_all();
      }
    } catch (...) {
      stop();
      throw;
    }
    for (auto& t : workers) t.join();
  }

  void remove(const std::vector<std::string>& names) override {
    std::vector<std::string> keys;
    for (const auto& n : names) {
      require_plain(n);
      keys.push_back(m_config.prefix + n);
    }
    if (!keys.empty()) m_store->delete_objects(m_config.bucket, keys);
  }

  std::vector<std::string> drop_unfinished(
      const std::function<bool(const std::string&, Clock::time_point)>& abandoned) override {
    std::vector<std::string> out;
    for (const auto& u : m_store->open_uploads(m_config.bucket, m_config.prefix)) {
      if (!u.key.starts_with(m_config.prefix)) continue;
      std::string name = u.key.substr(m_config.prefix.size());
      auto started = parse_iso8601(u.initiated);
      if (!plain_name(name) || !started || !abandoned(name, *started)) continue;
      m_store->abort_multipart(m_config.bucket, u.key, u.id);
      out.push_back(name);
    }
    return out;
  }

 private:
  static constexpr int kThreads = 4;
  static constexpr std::uint64_t kGetChunk = 8u << 20;
  static constexpr std::size_t kGetBuffers = 6;  // ranges in flight or waiting for the sink

  // One PUT: the server checks the body against its Content-MD5 and the signed sha256 (the
  // meta's, so what is stored is what the meta describes).
  PutResult put_small(int fd, const fs::path& local, const std::string& key, std::uint64_t size,
                      const std::string& sha256, PutOptions options, std::atomic<std::uint64_t>& sent) {
    std::string data(size, '\0');
    if (read_at(fd, data.data(), size, 0, local) != size) throw changed_since(local);
    Digest sha(DigestKind::sha256), md5(DigestKind::md5);
    sha.update(data.data(), data.size());
    md5.update(data.data(), data.size());
    std::string sha_hex = sha.finish_hex(), md5_raw = md5.finish_raw();
    if (!sha256.empty() && sha_hex != sha256) throw changed_since(local);
    options.sha256_hex = sha_hex;
    options.md5_base64 = base64_raw(md5_raw);
    MemorySource body(data.data(), data.size());
    m_store->put_object(m_config.bucket, key, body, options);
    sent += size;
    return PutResult{hex_of(md5_raw), size, false};
  }

  // A multipart upload: this thread reads the file in order (its sha256 on the way, each part's
  // MD5), kThreads workers send the parts side by side. An open upload of the same key that an
  // earlier push left is taken up again: parts already there with the same size and MD5 are kept.
  PutResult put_parts(int fd, const fs::path& local, const std::string& key, std::uint64_t size,
                      const std::string& sha256, const PutOptions& options, std::atomic<std::uint64_t>& sent) {
    const std::uint64_t sent_before = sent.load();
    const std::uint64_t part_size = part_size_for(size);
    const int count = static_cast<int>((size + part_size - 1) / part_size);
    std::unique_ptr<MultipartUpload> upload;
    std::map<int, S3Store::Part> have;
    PutResult result;
    if (auto id = m_store->open_upload(m_config.bucket, key)) {
      auto parts = m_store->list_parts(m_config.bucket, key, *id);
      bool fits = true;
      for (const auto& p : parts) {
        std::uint64_t want = p.number < count ? part_size : size - part_size * static_cast<std::uint64_t>(count - 1);
        fits = fits && p.number >= 1 && p.number <= count && p.size == want;
        have[p.number] = p;
      }
      if (fits) {
        // The parts there are in the upload's list; a part sent again replaces its entry.
        upload = m_store->resume_multipart(m_config.bucket, key, *id, parts);
        result.resumed = true;
        spdlog::info("remote: resuming the upload of {} ({} of {} parts there)", key, parts.size(), count);
      } else {
        m_store->abort_multipart(m_config.bucket, key, *id);
        have.clear();
      }
    }
    if (!upload) upload = m_store->start_multipart(m_config.bucket, key, options);

    struct Job {
      int number;
      std::string data;
      std::string md5_base64;
    };
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<Job> queue;
    bool closed = false;
    std::exception_ptr failure;
    auto worker = [&] {
      for (;;) {
        Job job;
        {
          std::unique_lock<std::mutex> lock(mutex);
          cv.wait(lock, [&] { return closed || !queue.empty() || failure; });
          if (failure || queue.empty()) return;
          // After a signal the parts queued are not sent (the next push sends them), and the
          // reader, which may be waiting for room in the queue, hears of it.
          if (interrupt_pending()) {
            try {
              check_interrupted();
            } catch (...) {
              failure = std::current_exception();
            }
            cv.notify_all();
            return;
          }
          job = std::move(queue.front());
          queue.pop_front();
        }
        cv.notify_all();
        try {
          MemorySource src(job.data.data(), job.data.size());
          upload->upload_part(job.number, src, job.md5_base64);
          sent += job.data.size();
          fault_point("remote.part-sent");
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!failure) failure = std::current_exception();
          cv.notify_all();
          return;
        }
      }
    };
    std::vector<std::thread> workers;
    const int threads = std::min(kThreads, count);
    auto stop = [&] {
      {
        std::lock_guard<std::mutex> lock(mutex);
        closed = true;
      }
      cv.notify_all();
      for (auto& t : workers) t.join();
    };
    try {
      start_workers(workers, static_cast<std::uint64_t>(threads), worker, stop);
    } catch (...) {
      // Nothing was sent: a resumed upload keeps its parts, a new one goes.
      if (result.resumed) {
        upload->keep_open();
      } else {
        try {
          upload->abort();
        } catch (const Error&) {  // the thread error is the one to report; prune drops it later
        }
      }
      throw;
    }

    Digest sha(DigestKind::sha256);
    std::string md5s;  // the parts' raw MD5s, for the ETag the completed object must have
    try {
      for (int n = 1; n <= count; ++n) {
        check_interrupted();
        std::uint64_t offset = part_size * static_cast<std::uint64_t>(n - 1);
        std::size_t len = static_cast<std::size_t>(std::min(part_size, size - offset));
        std::string data(len, '\0');
        if (read_at(fd, data.data(), len, offset, local) != len) throw changed_since(local);
        sha.update(data.data(), len);
        Digest md5(DigestKind::md5);
        md5.update(data.data(), len);
        std::string raw = md5.finish_raw();
        md5s += raw;
        if (auto h = have.find(n); h != have.end() && h->second.etag == hex_of(raw)) {
          continue;  // already there: not sent again
        }
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return queue.size() < static_cast<std::size_t>(threads) || failure; });
        if (failure) break;
        queue.push_back({n, std::move(data), base64_raw(raw)});
        lock.unlock();
        cv.notify_all();
      }
      stop();
      if (failure) std::rethrow_exception(failure);
      if (!sha256.empty() && sha.finish_hex() != sha256) {
        upload->abort();
        throw changed_since(local);
      }
      upload->complete();
    } catch (...) {
      if (!workers.empty() && workers.front().joinable()) stop();
      upload->keep_open();  // the next push resumes from the parts that made it
      throw;
    }
    std::string expected = multipart_etag(md5s, count);
    ObjectInfo info = m_store->head_object(m_config.bucket, key);
    if (info.etag != expected) {
      throw Error(ErrorCode::verification,
                  fmt::format("the off-site copy of {} has ETag {}, its parts make {}", local.filename().string(),
                              info.etag, expected),
                  "the copy did not arrive whole; run `backupctl push` again");
    }
    result.etag = info.etag;
    result.sent = sent.load() - sent_before;
    return result;
  }

  RemoteConfig m_config;
  std::unique_ptr<S3Store> m_store;
};

class FolderRemote : public Remote {
 public:
  explicit FolderRemote(const RemoteConfig& c) : m_config(c) {}

  std::string describe() const override { return m_config.url; }

  std::map<std::string, RemoteFile> list() override {
    std::map<std::string, RemoteFile> out;
    std::error_code ec;
    if (!fs::is_directory(m_config.dir, ec)) {
      throw Error(ErrorCode::not_found, "the remote folder " + m_config.dir.string() + " does not exist",
                  "mount it, or create it: mkdir -p " + m_config.dir.string());
    }
    for (const char* d : kDirs) {
      fs::path dir = m_config.dir / d;
      if (!fs::is_directory(fs::symlink_status(dir, ec))) continue;
      for (const auto& de : fs::directory_iterator(dir, ec)) {
        // Symbolic links are not followed: only files really in the remote count.
        if (!fs::is_regular_file(de.symlink_status(ec))) continue;
        std::string name = std::string(d) + "/" + de.path().filename().string();
        if (name.ends_with(".partial") || !plain_name(name)) continue;
        out[name] = RemoteFile{name, static_cast<std::uint64_t>(de.file_size(ec)), ""};
      }
    }
    return out;
  }

  PutResult put(const fs::path& local, const std::string& name, const std::string& sha256,
                std::atomic<std::uint64_t>& sent) override {
    require_plain(name);
    std::error_code ec;
    if (!fs::is_directory(m_config.dir, ec)) {
      throw Error(ErrorCode::not_found, "the remote folder " + m_config.dir.string() + " does not exist",
                  "mount it, or create it: mkdir -p " + m_config.dir.string());
    }
    const fs::path dest = m_config.dir / name;
    make_dirs(dest.parent_path());
    const fs::path partial = dest.string() + ".partial";
    Fd in = open_read(local);
    const std::uint64_t size = size_of(in.get(), local);
    PutResult result;
    Digest sha(DigestKind::sha256);
    std::vector<char> buf(1 << 20), theirs(1 << 20);
    // A .partial an earlier push left: kept as far as it matches the file.
    std::uint64_t have = 0;
    Fd out(::open(partial.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!out) throw_errno("cannot write " + partial.string());
    std::uint64_t there = size_of(out.get(), partial);
    if (there > 0 && there <= size) {
      bool same = true;
      for (std::uint64_t off = 0; off < there && same;) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), there - off));
        same = read_at(in.get(), buf.data(), n, off, local) == n &&
               read_at(out.get(), theirs.data(), n, off, partial) == n && std::memcmp(buf.data(), theirs.data(), n) == 0;
        if (same) sha.update(buf.data(), n);
        off += n;
      }
      if (same) {
        have = there;
        result.resumed = true;
      } else {
        (void)sha.finish_raw();  // starts over
      }
    }
    if (::ftruncate(out.get(), static_cast<off_t>(have)) != 0) throw_errno("cannot truncate " + partial.string());
    Throttle throttle(m_config.bwlimit);
    for (std::uint64_t off = have; off < size;) {
      check_interrupted();
      std::size_t n = read_at(in.get(), buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - off)), off, local);
      if (n == 0) throw changed_since(local);
      sha.update(buf.data(), n);
      std::size_t done = 0;
      while (done < n) {
        ssize_t k = ::pwrite(out.get(), buf.data() + done, n - done, static_cast<off_t>(off + done));
        if (k < 0) {
          if (errno == EINTR) {
            check_interrupted();
            continue;
          }
          throw_errno("cannot write " + partial.string());
        }
        done += static_cast<std::size_t>(k);
      }
      off += n;
      sent += n;
      result.sent += n;
      fault_point("remote.chunk-written");
      throttle.sent(n);
    }
    if (!sha256.empty() && sha.finish_hex() != sha256) {
      ::unlink(partial.c_str());
      throw changed_since(local);
    }
    if (::fsync(out.get()) != 0) throw_errno("cannot fsync " + partial.string());
    if (::rename(partial.c_str(), dest.c_str()) != 0) throw_errno("cannot rename " + partial.string());
    fsync_dir(dest.parent_path());
    return result;
  }

  void get(const std::string& name, io::Sink& sink) override {
    require_plain(name);
    Fd fd(::open((m_config.dir / name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
      if (errno == ENOENT) throw Error(ErrorCode::not_found, name + " is not on the remote " + m_config.url);
      throw_errno("cannot read " + (m_config.dir / name).string());
    }
    io::FdSource src(fd.get(), name);
    std::vector<char> buf(1 << 20);
    for (std::size_t n; (n = src.read(buf)) > 0;) {
      check_interrupted();
      sink.write(std::span<const char>(buf.data(), n));
    }
  }

  void remove(const std::vector<std::string>& names) override {
    for (const auto& n : names) {
      require_plain(n);
      if (::unlink((m_config.dir / n).c_str()) != 0 && errno != ENOENT) {
        throw_errno("cannot delete " + (m_config.dir / n).string());
      }
    }
  }

  std::vector<std::string> drop_unfinished(
      const std::function<bool(const std::string&, Clock::time_point)>& abandoned) override {
    std::vector<std::string> out;
    std::error_code ec;
    for (const char* d : kDirs) {
      fs::path dir = m_config.dir / d;
      if (!fs::is_directory(fs::symlink_status(dir, ec))) continue;
      for (const auto& de : fs::directory_iterator(dir, ec)) {
        std::string file = de.path().filename().string();
        if (!file.ends_with(".partial") || !fs::is_regular_file(de.symlink_status(ec))) continue;
        std::string name = std::string(d) + "/" + file.substr(0, file.size() - 8);
        struct stat st {};
        if (!plain_name(name) || ::lstat(de.path().c_str(), &st) != 0) continue;
        auto started = Clock::from_time_t(st.st_mtim.tv_sec);
        if (!abandoned(name, started)) continue;
        if (::unlink(de.path().c_str()) == 0) out.push_back(name);
      }
    }
    return out;
  }

 private:
  RemoteConfig m_config;
};

}  // namespace

bool remote_name_ok(const std::string& name) { return plain_name(name); }

std::string expected_etag(const fs::path& file, std::uint64_t part_size) {
  Fd fd = open_read(file);
  const std::uint64_t size = size_of(fd.get(), file);
  std::vector<char> buf(1 << 20);
  std::string md5s;
  int count = 0;
  for (std::uint64_t offset = 0; offset < size || count == 0; offset += part_size) {
    Digest md5(DigestKind::md5);
    std::uint64_t len = std::min(part_size, size - offset);
    for (std::uint64_t done = 0; done < len;) {
      std::size_t n = read_at(fd.get(), buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), len - done)),
                              offset + done, file);
      if (n == 0) break;
      md5.update(buf.data(), n);
      done += n;
    }
    md5s += md5.finish_raw();
    ++count;
    if (size == 0) break;
  }
  if (size <= kRemoteSinglePut) return hex_of(md5s);
  return multipart_etag(md5s, count);
}

std::unique_ptr<Remote> make_remote(const Config& config) {
  if (!config.remote) throw Error(ErrorCode::usage, "no remote: BACKUP_REMOTE_URL is not set", "set BACKUP_REMOTE_URL=s3://bucket/prefix or file:///path");
  const RemoteConfig& r = *config.remote;
  if (r.type == RemoteConfig::Type::folder) {
    // A copy in BACKUP_DIR (or one that holds it) is no copy, and the remote's retention there
    // would delete local backups: refused by what the folders are, not how they are spelled (a
    // link or a bind mount to BACKUP_DIR is BACKUP_DIR).
    const FolderRelation rel = folder_relation(r.dir, config.backup_dir);
    if (rel != FolderRelation::apart) {
      throw Error(ErrorCode::usage,
                  "BACKUP_REMOTE_URL " + r.url +
                      (rel == FolderRelation::same         ? " is BACKUP_DIR itself"
                       : rel == FolderRelation::a_inside_b ? " is inside BACKUP_DIR"
                                                           : " holds BACKUP_DIR") +
                      " (" + config.backup_dir.string() + "): a copy there is lost with the backups, and the remote's "
                      "retention would delete them",
                  "point BACKUP_REMOTE_URL at a folder on another disk or machine (its mount here)");
    }
    return std::make_unique<FolderRemote>(r);
  }
  if (r.access_key.empty() || r.secret_key.empty()) {
    throw Error(ErrorCode::usage, "the S3 remote " + r.url + " needs BACKUP_REMOTE_ACCESS_KEY and BACKUP_REMOTE_SECRET_KEY",
                "a key of the off-site account (put and read; see README: off-site copies)");
  }
  return std::make_unique<S3Remote>(r);
}

}  // namespace backupctl
