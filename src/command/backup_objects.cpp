#include "command/backup_objects.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "tar/tar.hpp"
#include "io/age.hpp"
#include "catalog/catalog.hpp"
#include "catalog/naming.hpp"
#include "util/digest.hpp"
#include "util/encoding.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"
#include "util/work_queue.hpp"

namespace backupctl {

namespace {

// Objects up to this size are prefetched into memory by the workers; larger ones stream through
// the writer thread.
constexpr std::uint64_t kBufferedMax = 8u << 20;
// Bytes of prefetched objects held at once.
constexpr std::uint64_t kBudget = 48u << 20;
// How far ahead of the writer the workers may run (in objects).
constexpr std::size_t kWindow = 2048;

struct Item {
  std::string bucket;
  ObjectEntry entry;
};

struct Fetched {
  bool vanished = false;  // deleted between the listing and the download
  std::string data;
  ObjectInfo info;
};

std::time_t parse_mtime(const std::string& text) {
  if (auto t = parse_iso8601(text)) return Clock::to_time_t(*t);
  return std::time(nullptr);
}

// MD5 and sha256 of what passes, forwarded to `next`.
class DigestSink : public io::Sink {
 public:
  explicit DigestSink(io::Sink* next) : m_next(next) {}
  void write(std::span<const char> data) override {
    m_sha.update(data);
    m_md5.update(data);
    m_bytes += data.size();
    if (m_next) m_next->write(data);
  }
  std::string sha256() { return m_sha.finish_hex(); }
  std::string md5() { return m_md5.finish_hex(); }
  std::uint64_t bytes() const { return m_bytes; }

 private:
  io::Sink* m_next;
  Digest m_sha{DigestKind::sha256};
  Digest m_md5{DigestKind::md5};
  std::uint64_t m_bytes = 0;
};

// Downloads the small objects ahead of the writer, side by side, within kBudget bytes and kWindow
// objects of it; the large ones are left to the writer.
class Prefetcher {
 public:
  Prefetcher(ObjectStore& store, const std::vector<Item>& items, int threads)
      : m_store(store), m_items(items), m_work(threads, kBudget) {}

  // Waits for item i (small, the next one not taken) and hands its result over.
  Fetched take(std::size_t i) {
    writer_at(i);
    return m_work.take();
  }
  // Keeps the downloads ahead of item i going. Item i itself always fits: every small item
  // before it has been taken, so nothing is held.
  void writer_at(std::size_t i) {
    while (m_next < m_items.size() && m_next < i + kWindow) {
      const Item& item = m_items[m_next];
      if (item.entry.size <= kBufferedMax &&
          !m_work.try_add(item.entry.size, [this, &item] { return fetch(item); })) {
        return;
      }
      ++m_next;
    }
  }

 private:
  Fetched fetch(const Item& item) {
    Fetched f;
    try {
      io::StringSink sink;
      f.info = m_store.get_object(item.bucket, item.entry.key, sink);
      f.data = sink.take();
    } catch (const Error& e) {
      if (e.code() != ErrorCode::not_found) throw;
      f.vanished = true;
    }
    return f;
  }

  ObjectStore& m_store;
  const std::vector<Item>& m_items;
  std::size_t m_next = 0;  // the first item not yet queued
  OrderedWork<Fetched> m_work;
};

bool md5_etag(const std::string& etag) {
  return etag.size() == 32 && etag.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

namespace {

// MINIO_BUCKETS, each checked to exist, or every bucket of the store; sorted.
std::vector<std::string> buckets_to_back_up(const Config& config, ObjectStore& store) {
  std::vector<std::string> buckets = config.minio_buckets;
  if (buckets.empty()) return store.list_buckets();
  for (const auto& b : buckets) {
    if (!store.bucket_exists(b)) {
      throw Error(ErrorCode::not_found, "bucket " + b + " does not exist on " + store.describe(),
                  "check MINIO_BUCKETS (empty means every bucket)");
    }
  }
  std::sort(buckets.begin(), buckets.end());
  return buckets;
}

// Every object of `buckets`, in the order the store lists them.
std::vector<Item> list_items(ObjectStore& store, const std::vector<std::string>& buckets) {
  std::vector<Item> items;
  std::uint64_t listed_bytes = 0;
  for (const auto& b : buckets) {
    store.list_objects(b, "", [&](const ObjectEntry& e) {
      items.push_back({b, e});
      listed_bytes += e.size;
    });
  }
  spdlog::info("backup objects: {} objects, {} in {} bucket(s) of {}", items.size(), human_bytes(listed_bytes),
               buckets.size(), store.describe());
  return items;
}

// A small object, fetched ahead by the prefetcher, into the tar. False when it was deleted
// during the backup (skipped).
bool add_prefetched(Prefetcher& prefetch, std::size_t i, TarWriter& writer, ManifestObject& mo, std::string& md5) {
  Fetched f = prefetch.take(i);
  if (f.vanished) return false;
  mo.size = f.data.size();
  mo.content_type = f.info.content_type;
  mo.metadata = f.info.metadata;
  if (!f.info.etag.empty()) mo.etag = f.info.etag;
  writer.begin(mo.path, mo.size, parse_mtime(mo.last_modified),
               looks_compressible(mo.content_type, std::span<const char>(f.data.data(), f.data.size())));
  DigestSink digest(nullptr);
  digest.write(std::span<const char>(f.data.data(), f.data.size()));
  writer.write(std::span<const char>(f.data.data(), f.data.size()));
  writer.end();
  mo.sha256 = digest.sha256();
  md5 = digest.md5();
  return true;
}

// A tar entry begun at the object's first bytes (they decide whether it is worth deflating).
class EntrySink : public io::Sink {
 public:
  EntrySink(TarWriter& w, const ManifestObject& mo) : m_w(w), m_mo(mo) {}
  void write(std::span<const char> data) override {
    if (!m_started) {
      m_w.begin(m_mo.path, m_mo.size, parse_mtime(m_mo.last_modified), looks_compressible(m_mo.content_type, data));
      m_started = true;
    }
    m_w.write(data);
  }
  bool started() const { return m_started; }

 private:
  TarWriter& m_w;
  const ManifestObject& m_mo;
  bool m_started = false;
};

// A large object, streamed from the store into the tar now; the entry's size is the one the
// store reports and must hold.
void add_streamed(ObjectStore& store, const Item& item, TarWriter& writer, ManifestObject& mo, std::string& md5) {
  ObjectInfo head = store.head_object(item.bucket, item.entry.key);
  mo.size = head.size;
  mo.content_type = head.content_type;
  mo.metadata = head.metadata;
  if (!head.etag.empty()) mo.etag = head.etag;
  EntrySink entry_sink(writer, mo);
  DigestSink digest(&entry_sink);
  store.get_object(item.bucket, item.entry.key, digest);
  if (!entry_sink.started() || digest.bytes() != mo.size) {
    throw Error(ErrorCode::tool_failed,
                fmt::format("{}/{} changed while it was read ({} bytes read, {} expected)", item.bucket,
                            item.entry.key, digest.bytes(), mo.size),
                "the object was replaced during the backup; run it again");
  }
  writer.end();
  mo.sha256 = digest.sha256();
  md5 = digest.md5();
}

// Kept, but no S3 restore will put them back (storage/object_store.hpp: dot_segment): said now,
// not on the day of the restore.
void warn_dotted_keys(const Manifest& manifest) {
  std::size_t dotted = 0;
  std::string first_dotted;
  for (const auto& o : manifest.objects) {
    if (!dot_segment(o.key).empty() && dotted++ == 0) first_dotted = o.bucket + "/" + o.key;
  }
  if (dotted > 0) {
    spdlog::warn("backup objects: {} key(s) have a '.' or '..' segment (first: {}): kept in the archive, but a "
                 "restore into S3 refuses them (README: security notes); rename them in the store",
                 dotted, first_dotted);
  }
}

}  // namespace

BackupResult backup_objects(const Config& config, ObjectStore& store, Progress& progress,
                            const BackupObjectsOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  // 1. Which buckets, then the whole listing, before anything is written.
  const std::vector<std::string> buckets = buckets_to_back_up(config, store);
  const std::vector<Item> items = list_items(store, buckets);

  // 2. The archive, reserved and streamed.
  const fs::path dir = config.kind_dir("objects");
  make_dirs(dir, 0700);
  const std::string suffix = std::string(config.objects_zstd ? ".tar.zst" : ".tar.gz") +
                             (config.age_recipients.empty() ? "" : ".age");
  ReservedFiles files = reserve_backup_files(dir, [&](std::string_view ts) {
    return std::vector<std::string>{fmt::format("objects_{}_{}{}", store.label(), ts, suffix)};
  });
  io::AtomicFileSink& file = files.sinks[0];
  io::StoredChain stored(file, config.age_recipients);
  TarWriter writer(stored.head(), config.objects_zstd ? TarCompression::zstd : TarCompression::gzip,
                   config.zstd_threads);

  Manifest manifest;
  manifest.label = store.label();
  manifest.source = store.describe();
  manifest.buckets = buckets;
  std::uint64_t done_bytes = 0, vanished = 0, etag_mismatch = 0;
  progress.start("objects");
  {
    Prefetcher prefetch(store, items, config.object_parallel);
    for (std::size_t i = 0; i < items.size(); ++i) {
      check_interrupted();
      const Item& item = items[i];
      ManifestObject mo;
      mo.bucket = item.bucket;
      mo.key = item.entry.key;
      mo.path = tar_path(item.bucket, item.entry.key);
      mo.etag = item.entry.etag;
      mo.last_modified = item.entry.last_modified;
      std::string md5;
      if (item.entry.size <= kBufferedMax) {
        if (!add_prefetched(prefetch, i, writer, mo, md5)) {
          spdlog::warn("backup objects: {}/{} was deleted during the backup; skipped", item.bucket, item.entry.key);
          ++vanished;
          continue;
        }
      } else {
        prefetch.writer_at(i);
        add_streamed(store, item, writer, mo, md5);
      }
      if (md5_etag(mo.etag) && md5 != mo.etag) {
        // A single-part ETag is the MD5 of the content (unless the server encrypts it).
        spdlog::warn("backup objects: {}/{}: the bytes read do not match the ETag {}", item.bucket, item.entry.key, mo.etag);
        ++etag_mismatch;
      }
      done_bytes += mo.size;
      progress.update(done_bytes);
      manifest.objects.push_back(std::move(mo));
    }
  }
  writer.finish(manifest);
  progress.finish();
  warn_dotted_keys(manifest);

  Meta meta = new_backup_meta("objects", file.final_path(), stored.size(), stored.sha256(), config.profile,
                              files.time, seconds_since(t0),
                              options.set_id.empty() ? new_set_id(files.time) : options.set_id,
                              config.age_recipients);
  meta.format = "pax_tar";
  meta.compression = config.objects_zstd ? "zstd" : "gzip";
  meta.source = {{"storage", store.label()},
                 {"location", store.describe()},
                 {"buckets", buckets},
                 {"objects", manifest.objects.size()},
                 {"bytes", done_bytes},
                 {"vanished_during_backup", vanished},
                 {"etag_mismatches", etag_mismatch}};
  publish_backup(file, meta);
  spdlog::info("backup objects: wrote {} ({} objects, {} of data, {} archive, in {})",
               file.final_path().string(), manifest.objects.size(), human_bytes(done_bytes),
               human_bytes(meta.size), human_duration(meta.duration_seconds));
  return {file.final_path(), meta};
}

}  // namespace backupctl
