// The S3 remote: a bucket under a prefix, through S3Store (storage/s3/). Large files go up in
// parts side by side and a copy cut short resumes its open multipart upload; large downloads come
// in parallel ranges through a fixed pool of buffers.
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <optional>

#include "storage/object_store.hpp"
#include "storage/remote_files.hpp"
#include "storage/s3/s3_store.hpp"
#include "util/digest.hpp"
#include "util/encoding.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/fs.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"
#include "util/work_queue.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

std::string hex_of(const std::string& raw) {
  return hex_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}
std::string base64_raw(const std::string& raw) {
  return base64_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

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

// The buffers of one download's ranges, allocated once.
class RangeBuffers {
 public:
  RangeBuffers(std::size_t n, const std::string& name) : m_buffers(n, ChunkSink(name)) {
    for (auto& b : m_buffers) m_free.push_back(&b);
  }
  ChunkSink* pop() {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_free.empty()) throw Error(ErrorCode::internal, "no free buffer for a range");
    ChunkSink* b = m_free.back();
    m_free.pop_back();
    return b;
  }
  void push(ChunkSink* b) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_free.push_back(b);
  }

 private:
  std::vector<ChunkSink> m_buffers;
  std::mutex m_mutex;
  std::vector<ChunkSink*> m_free;
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
      if (!remote_name_ok(name)) return;
      out[name] = RemoteFile{name, e.size, e.etag};
    });
    return out;
  }

  PutResult put(const fs::path& local, const std::string& name, const std::string& sha256,
                std::atomic<std::uint64_t>& sent) override {
    require_remote_name(name);
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
    require_remote_name(name);
    const std::string key = m_config.prefix + name;
    ObjectInfo info = m_store->head_object(m_config.bucket, key);
    if (info.size <= kRemoteSinglePut) {
      m_store->get_object(m_config.bucket, key, sink);
      return;
    }
    const std::uint64_t chunks = (info.size + kGetChunk - 1) / kGetChunk;
    RangeBuffers buffers(kGetBuffers, name);
    const std::atomic<bool>* caller_stop = current_stop();
    // The budget admits kGetBuffers ranges (only the last is shorter than kGetChunk) between
    // try_add() and the end of the sink's write: a free buffer is always there for a range.
    OrderedWork<ChunkSink*> ranges(static_cast<int>(std::min<std::uint64_t>(kThreads, chunks)),
                                   kGetBuffers * kGetChunk);
    auto add_ranges = [&] {
      while (ranges.added() < chunks) {
        const std::uint64_t first = ranges.added() * kGetChunk, last = std::min(info.size, first + kGetChunk) - 1;
        bool added = ranges.try_add(last - first + 1, [&, first, last] {
          StopScope stop_with_the_caller(caller_stop);  // a caller that gives up ends the ranges in flight
          check_interrupted();
          ChunkSink* chunk = buffers.pop();  // not given back on an error: the download ends
          chunk->expect(last - first + 1);
          m_store->get_range(m_config.bucket, key, first, last, *chunk, info.etag);
          chunk->check_whole();
          return chunk;
        });
        if (!added) return;
      }
    };
    for (std::uint64_t next = 0; next < chunks; ++next) {
      add_ranges();
      ChunkSink* chunk = ranges.take();
      sink.write(std::span<const char>(chunk->data.data(), chunk->data.size()));
      fault_point("remote.chunk-fetched");
      check_interrupted();  // the ranges in flight may all be on their way already
      buffers.push(chunk);
    }
  }

  void remove(const std::vector<std::string>& names) override {
    std::vector<std::string> keys;
    for (const auto& n : names) {
      require_remote_name(n);
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
      if (!remote_name_ok(name) || !started || !abandoned(name, *started)) continue;
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

  // The upload of `key`: an open one an earlier push left, when its parts fit this file's part
  // size (`have` gets them), else a new one.
  std::unique_ptr<MultipartUpload> open_upload(const std::string& key, std::uint64_t size, std::uint64_t part_size,
                                               int count, const PutOptions& options,
                                               std::map<int, S3Store::Part>& have, PutResult& result) {
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
        result.resumed = true;
        spdlog::info("remote: resuming the upload of {} ({} of {} parts there)", key, parts.size(), count);
        return m_store->resume_multipart(m_config.bucket, key, *id, parts);
      }
      m_store->abort_multipart(m_config.bucket, key, *id);
      have.clear();
    }
    return m_store->start_multipart(m_config.bucket, key, options);
  }

  // A multipart upload: this thread reads the file in order (its sha256 on the way, each part's
  // MD5), kThreads workers send the parts side by side. An open upload of the same key that an
  // earlier push left is taken up again: parts already there with the same size and MD5 are kept.
  PutResult put_parts(int fd, const fs::path& local, const std::string& key, std::uint64_t size,
                      const std::string& sha256, const PutOptions& options, std::atomic<std::uint64_t>& sent) {
    const std::uint64_t sent_before = sent.load();
    const std::uint64_t part_size = part_size_for(size);
    const int count = static_cast<int>((size + part_size - 1) / part_size);
    std::map<int, S3Store::Part> have;
    PutResult result;
    std::unique_ptr<MultipartUpload> upload = open_upload(key, size, part_size, count, options, have, result);

    // Up to two parts per thread in memory: one being sent, one read and waiting.
    const int threads = std::min(kThreads, count);
    std::optional<WorkQueue> senders;
    try {
      senders.emplace(threads, part_size * 2 * static_cast<std::uint64_t>(threads));
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
        if (!senders->reserve(len)) break;  // a part failed: reported below
        senders->submit(len, [&upload, &sent, n, data = std::move(data), md5_base64 = base64_raw(raw)] {
          MemorySource src(data.data(), data.size());
          upload->upload_part(n, src, md5_base64);
          sent += data.size();
          fault_point("remote.part-sent");
        });
      }
      if (!senders->drain()) std::rethrow_exception(senders->first_error());
      if (!sha256.empty() && sha.finish_hex() != sha256) {
        upload->abort();
        throw changed_since(local);
      }
      upload->complete();
    } catch (...) {
      senders->cancel();  // no part of `upload` still on a worker
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

}  // namespace

std::unique_ptr<Remote> make_s3_remote(const RemoteConfig& config) { return std::make_unique<S3Remote>(config); }

}  // namespace backupctl
