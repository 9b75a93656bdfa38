#include "archive/object_archive.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "io/age.hpp"
#include "io/zstd.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Manifest

json Manifest::to_json() const {
  json objs = json::array();
  for (const auto& o : objects) {
    objs.push_back({{"bucket", o.bucket},
                    {"key", o.key},
                    {"path", o.path},
                    {"size", o.size},
                    {"etag", o.etag},
                    {"sha256", o.sha256},
                    {"content_type", o.content_type},
                    {"metadata", o.metadata},
                    {"last_modified", o.last_modified}});
  }
  return {{"manifest_version", kVersion}, {"label", label}, {"source", source},
          {"buckets", buckets},           {"objects", objs}};
}

Manifest Manifest::from_json(const json& j) {
  try {
    Manifest m;
    m.label = j.value("label", "");
    m.source = j.value("source", "");
    m.buckets = j.at("buckets").get<std::vector<std::string>>();
    for (const auto& o : j.at("objects")) {
      ManifestObject mo;
      mo.bucket = o.at("bucket").get<std::string>();
      mo.key = o.at("key").get<std::string>();
      mo.path = o.at("path").get<std::string>();
      mo.size = o.at("size").get<std::uint64_t>();
      mo.etag = o.value("etag", "");
      mo.sha256 = o.at("sha256").get<std::string>();
      mo.content_type = o.value("content_type", "");
      if (o.contains("metadata")) mo.metadata = o["metadata"].get<std::map<std::string, std::string>>();
      mo.last_modified = o.value("last_modified", "");
      m.objects.push_back(std::move(mo));
    }
    return m;
  } catch (const json::exception& e) {
    throw Error(ErrorCode::verification, std::string("the archive's manifest is malformed: ") + e.what(),
                "the file is damaged; use another backup");
  }
}

bool safe_relative_key(const std::string& key) {
  if (key.empty() || key.size() > 1024 || key.front() == '/' || key.back() == '/') return false;
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t slash = key.find('/', start);
    std::string_view seg(key.data() + start, (slash == std::string::npos ? key.size() : slash) - start);
    if (seg.empty() || seg == "." || seg == "..") return false;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return std::none_of(key.begin(), key.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f || c == '\\'; });
}

std::string archive_path(const std::string& bucket, const std::string& key) {
  if (safe_relative_key(key)) return bucket + "/" + key;
  return ".backupctl/encoded/" + bucket + "/" + digest_hex(DigestKind::sha256, key);
}

bool looks_compressible(const std::string& content_type, std::span<const char> sample) {
  static const char* stored[] = {"image/jpeg", "image/png",  "image/gif",   "image/webp",
                                 "image/heic", "image/avif", "video/",      "audio/",
                                 "application/zip", "application/gzip", "application/x-gzip",
                                 "application/zstd", "application/x-7z", "application/x-rar",
                                 "application/x-bzip2", "application/x-xz", "application/pdf",
                                 "application/vnd.openxmlformats", "application/epub+zip",
                                 "font/woff"};
  for (const char* t : stored) {
    if (content_type.rfind(t, 0) == 0) return false;
  }
  if (content_type.rfind("text/", 0) == 0 || content_type.find("json") != std::string::npos ||
      content_type.find("xml") != std::string::npos || content_type.find("csv") != std::string::npos) {
    return true;
  }
  // Unknown type: Shannon entropy of the first 4 KiB; above ~7.2 bits per byte deflate gains ~nothing.
  std::size_t n = std::min<std::size_t>(sample.size(), 4096);
  if (n < 64) return true;
  std::array<int, 256> counts{};
  for (std::size_t i = 0; i < n; ++i) counts[static_cast<unsigned char>(sample[i])]++;
  double h = 0;
  for (int c : counts) {
    if (c == 0) continue;
    double p = static_cast<double>(c) / static_cast<double>(n);
    h -= p * std::log2(p);
  }
  // A sample has fewer distinct bytes than 256 however random it is: scale the threshold by what
  // a random sample of this length can show.
  double max_h = std::log2(std::min<double>(256.0, static_cast<double>(n)));
  return h < 0.9 * max_h;
}

// ---------------------------------------------------------------------------------------------
// gzip with per-entry levels

GzipCompressSink::GzipCompressSink(io::Sink& next, int level)
    : m_next(next), m_stream(new z_stream{}), m_out(256 * 1024), m_level(level) {
  // 16 + MAX_WBITS: a gzip header and trailer; memLevel 8 is zlib's default.
  if (deflateInit2(static_cast<z_stream*>(m_stream), level, Z_DEFLATED, 16 + MAX_WBITS, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    delete static_cast<z_stream*>(m_stream);
    throw Error(ErrorCode::internal, "cannot initialise zlib");
  }
}

GzipCompressSink::~GzipCompressSink() {
  deflateEnd(static_cast<z_stream*>(m_stream));
  delete static_cast<z_stream*>(m_stream);
}

void GzipCompressSink::drive(int flush) {
  z_stream* z = static_cast<z_stream*>(m_stream);
  do {
    z->next_out = reinterpret_cast<Bytef*>(m_out.data());
    z->avail_out = static_cast<uInt>(m_out.size());
    int rc = deflate(z, flush);
    if (rc == Z_STREAM_ERROR) throw Error(ErrorCode::internal, "deflate failed");
    std::size_t n = m_out.size() - z->avail_out;
    if (n > 0) m_next.write(std::span<const char>(m_out.data(), n));
  } while (z->avail_out == 0 || (flush == Z_FINISH && z->avail_in > 0));
}

void GzipCompressSink::set_level(int level) {
  if (level == m_level) return;
  z_stream* z = static_cast<z_stream*>(m_stream);
  // deflateParams compresses what it holds with the old level first; it needs output room.
  for (;;) {
    z->next_out = reinterpret_cast<Bytef*>(m_out.data());
    z->avail_out = static_cast<uInt>(m_out.size());
    int rc = deflateParams(z, level, Z_DEFAULT_STRATEGY);
    std::size_t n = m_out.size() - z->avail_out;
    if (n > 0) m_next.write(std::span<const char>(m_out.data(), n));
    if (rc == Z_OK) break;
    if (rc != Z_BUF_ERROR) throw Error(ErrorCode::internal, "deflateParams failed");
  }
  m_level = level;
}

void GzipCompressSink::write(std::span<const char> data) {
  z_stream* z = static_cast<z_stream*>(m_stream);
  z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z->avail_in = static_cast<uInt>(data.size());
  while (z->avail_in > 0) drive(Z_NO_FLUSH);
}

void GzipCompressSink::finish() {
  z_stream* z = static_cast<z_stream*>(m_stream);
  z->next_in = nullptr;
  z->avail_in = 0;
  for (;;) {
    z->next_out = reinterpret_cast<Bytef*>(m_out.data());
    z->avail_out = static_cast<uInt>(m_out.size());
    int rc = deflate(z, Z_FINISH);
    std::size_t n = m_out.size() - z->avail_out;
    if (n > 0) m_next.write(std::span<const char>(m_out.data(), n));
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) throw Error(ErrorCode::internal, "deflate finish failed");
  }
  m_next.finish();
}

// ---------------------------------------------------------------------------------------------
// Writer

struct WriterCallbacks {
  static la_ssize_t write(struct archive* a, void* client, const void* buf, size_t n) {
    auto* w = static_cast<ObjectArchiveWriter*>(client);
    try {
      w->m_compressor->write(std::span<const char>(static_cast<const char*>(buf), n));
    } catch (...) {
      w->m_error = std::current_exception();
      archive_set_error(a, EIO, "write failed");
      return -1;
    }
    return static_cast<la_ssize_t>(n);
  }
};

namespace {

[[noreturn]] void archive_failure(struct archive* a, const std::exception_ptr& cause, const char* what) {
  if (cause) std::rethrow_exception(cause);
  throw Error(ErrorCode::internal, std::string(what) + ": " + (archive_error_string(a) ? archive_error_string(a) : "libarchive error"));
}

}  // namespace

ObjectArchiveWriter::ObjectArchiveWriter(io::Sink& out, ArchiveCompression compression, int zstd_threads) {
  if (compression == ArchiveCompression::zstd) {
    m_compressor = std::make_unique<io::ZstdCompressSink>(out, 3, zstd_threads);
  } else {
    auto gz = std::make_unique<GzipCompressSink>(out, 1);
    m_gzip = gz.get();
    m_compressor = std::move(gz);
  }
  std::unique_ptr<struct archive, int (*)(struct archive*)> a(archive_write_new(), archive_write_free);
  archive_write_set_format_pax_restricted(a.get());
  archive_write_set_bytes_per_block(a.get(), 0);  // no 10 KiB blocking: we buffer downstream
  if (archive_write_open(a.get(), this, nullptr, WriterCallbacks::write, nullptr) != ARCHIVE_OK) {
    archive_failure(a.get(), m_error, "cannot start the archive");
  }
  m_archive = a.release();
}

ObjectArchiveWriter::~ObjectArchiveWriter() {
  if (m_archive) archive_write_free(m_archive);
}

namespace {

void set_owner(archive_entry* e, const EntryOwner& owner) {
  if (owner.uid >= 0) archive_entry_set_uid(e, owner.uid);
  if (owner.gid >= 0) archive_entry_set_gid(e, owner.gid);
  if (!owner.user.empty()) archive_entry_set_uname_utf8(e, owner.user.c_str());
  if (!owner.group.empty()) archive_entry_set_gname_utf8(e, owner.group.c_str());
}

}  // namespace

void ObjectArchiveWriter::add_directory(const std::string& path, unsigned mode, std::time_t mtime,
                                        const EntryOwner& owner) {
  archive_entry* e = archive_entry_new();
  set_owner(e, owner);
  archive_entry_set_pathname_utf8(e, path.c_str());
  archive_entry_set_filetype(e, AE_IFDIR);
  archive_entry_set_perm(e, mode & 07777);
  archive_entry_set_mtime(e, mtime, 0);
  int rc = archive_write_header(m_archive, e);
  archive_entry_free(e);
  if (rc != ARCHIVE_OK) archive_failure(m_archive, m_error, ("cannot write the entry " + path).c_str());
}

void ObjectArchiveWriter::add_symlink(const std::string& path, const std::string& target, std::time_t mtime,
                                      const EntryOwner& owner) {
  archive_entry* e = archive_entry_new();
  set_owner(e, owner);
  archive_entry_set_pathname_utf8(e, path.c_str());
  archive_entry_set_filetype(e, AE_IFLNK);
  archive_entry_set_perm(e, 0777);
  archive_entry_set_symlink_utf8(e, target.c_str());
  archive_entry_set_mtime(e, mtime, 0);
  int rc = archive_write_header(m_archive, e);
  archive_entry_free(e);
  if (rc != ARCHIVE_OK) archive_failure(m_archive, m_error, ("cannot write the entry " + path).c_str());
}

void ObjectArchiveWriter::begin(const std::string& path, std::uint64_t size, std::time_t mtime,
                                bool compressible, unsigned mode, const EntryOwner& owner) {
  if (m_gzip) m_gzip->set_level(compressible ? 1 : 0);
  archive_entry* e = archive_entry_new();
  set_owner(e, owner);
  archive_entry_set_pathname_utf8(e, path.c_str());
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, mode & 07777);
  archive_entry_set_size(e, static_cast<la_int64_t>(size));
  archive_entry_set_mtime(e, mtime, 0);
  int rc = archive_write_header(m_archive, e);
  archive_entry_free(e);
  if (rc != ARCHIVE_OK) archive_failure(m_archive, m_error, ("cannot write the entry " + path).c_str());
  m_declared = size;
  m_written = 0;
  m_in_entry = true;
}

void ObjectArchiveWriter::write(std::span<const char> data) {
  while (!data.empty()) {
    la_ssize_t n = archive_write_data(m_archive, data.data(), data.size());
    if (n < 0) archive_failure(m_archive, m_error, "cannot write to the archive");
    m_written += static_cast<std::uint64_t>(n);
    data = data.subspan(static_cast<std::size_t>(n));
  }
}

void ObjectArchiveWriter::end() {
  if (m_written != m_declared) {
    throw Error(ErrorCode::internal,
                fmt::format("archive entry size mismatch: declared {}, wrote {}", m_declared, m_written));
  }
  if (archive_write_finish_entry(m_archive) != ARCHIVE_OK) archive_failure(m_archive, m_error, "cannot end an entry");
  m_in_entry = false;
}

void ObjectArchiveWriter::finish(const Manifest& manifest) {
  std::string text = manifest.to_json().dump(1) + "\n";
  begin(kManifestPath, text.size(), std::time(nullptr), true);
  write(std::span<const char>(text.data(), text.size()));
  end();
  close();
}

void ObjectArchiveWriter::close() {
  if (archive_write_close(m_archive) != ARCHIVE_OK) archive_failure(m_archive, m_error, "cannot close the archive");
  m_compressor->finish();
}

// ---------------------------------------------------------------------------------------------
// Reader

struct ReaderCallbacks {
  static la_ssize_t read(struct archive* a, void* client, const void** buf) {
    auto* r = static_cast<ObjectArchiveReader*>(client);
    try {
      std::size_t n = r->m_in.read(r->m_buf);
      *buf = r->m_buf.data();
      return static_cast<la_ssize_t>(n);
    } catch (...) {
      r->m_error = std::current_exception();
      archive_set_error(a, EIO, "read failed");
      return -1;
    }
  }
};

namespace {

Error damaged(struct archive* a, const std::exception_ptr& cause) {
  if (cause) std::rethrow_exception(cause);
  return Error(ErrorCode::verification,
               std::string("the archive is damaged: ") + (archive_error_string(a) ? archive_error_string(a) : "unreadable"),
               "use another backup");
}

}  // namespace

ObjectArchiveReader::ObjectArchiveReader(io::Source& in) : m_in(in), m_buf(1 << 20) {
  // Owned by a guard until it opened: a constructor that throws runs no destructor (the fuzz test
  // found the leak).
  std::unique_ptr<struct archive, int (*)(struct archive*)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_zstd(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open(a.get(), this, nullptr, ReaderCallbacks::read, nullptr) != ARCHIVE_OK) {
    throw damaged(a.get(), m_error);
  }
  m_archive = a.release();
}

ObjectArchiveReader::~ObjectArchiveReader() {
  if (m_archive) archive_read_free(m_archive);
}

bool ObjectArchiveReader::next(ArchiveEntry& entry) {
  archive_entry* e = nullptr;
  int rc = archive_read_next_header(m_archive, &e);
  if (rc == ARCHIVE_EOF) return false;
  if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) throw damaged(m_archive, m_error);
  const char* path = archive_entry_pathname_utf8(e);
  if (!path) path = archive_entry_pathname(e);
  entry.path = path ? path : "";
  entry.size = static_cast<std::uint64_t>(archive_entry_size(e));
  auto type = archive_entry_filetype(e);
  entry.regular = type == AE_IFREG && archive_entry_hardlink(e) == nullptr;
  entry.type = type == AE_IFREG ? (archive_entry_hardlink(e) ? "hardlink" : "file")
               : type == AE_IFLNK ? "symlink"
               : type == AE_IFDIR ? "directory"
                                  : "other";
  entry.mode = archive_entry_perm(e);
  entry.mtime = archive_entry_mtime(e);
  const char* link = archive_entry_symlink_utf8(e);
  if (!link) link = archive_entry_symlink(e);
  entry.symlink = link ? link : "";
  entry.owner.uid = static_cast<long>(archive_entry_uid(e));
  entry.owner.gid = static_cast<long>(archive_entry_gid(e));
  const char* user = archive_entry_uname_utf8(e);
  const char* group = archive_entry_gname_utf8(e);
  entry.owner.user = user ? user : "";
  entry.owner.group = group ? group : "";
  return true;
}

std::size_t ObjectArchiveReader::read(std::span<char> buf) {
  la_ssize_t n = archive_read_data(m_archive, buf.data(), buf.size());
  if (n < 0) throw damaged(m_archive, m_error);
  return static_cast<std::size_t>(n);
}

// ---------------------------------------------------------------------------------------------
// Scan

namespace {

// Reads a source ahead on a thread of its own and hashes its bytes there (sha256), handing them
// out in order: the file's checksum, half the CPU of checking an archive (the entries' checksums
// are the other half), runs beside the reading of the entries instead of before it. Holds at most
// kBlocks + 2 blocks of kBlock bytes (queued, being filled, being read).
class HashingReadAhead : public io::Source {
 public:
  HashingReadAhead(io::Source& in, Progress& progress) : m_in(in), m_sha(m_null), m_progress(progress) {
    m_thread = std::thread([this] { fill(); });
  }
  ~HashingReadAhead() override {
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_stop = true;
    }
    m_cv.notify_all();
    if (m_thread.joinable()) m_thread.join();
  }

  std::size_t read(std::span<char> buf) override {
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

  // Reads what the archive reader did not need (padding after the end-of-archive blocks) and
  // returns the sha256 of every byte of the source.
  std::string finish() {
    std::vector<char> buf(kBlock);
    while (read(buf) > 0) {
    }
    m_thread.join();  // it stopped at the end of the source
    m_sha.finish();
    return m_sha.hex();
  }
  std::uint64_t total() const { return m_total; }

 private:
  static constexpr std::size_t kBlock = 1 << 20;
  static constexpr std::size_t kBlocks = 4;

  // The reader thread: fills blocks until the source ends, fails, or the consumer goes away.
  void fill() {
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
  bool next_block() {
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

  io::Source& m_in;
  io::NullSink m_null;
  io::Sha256Sink m_sha;  // used by the reader thread only, until finish() joins it
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

}  // namespace

ObjectArchiveScan scan_object_archive(const std::string& file, Progress& progress,
                                      const std::filesystem::path& identity) {
  const bool encrypted = io::is_encrypted(file);
  std::optional<io::FileDigest> stored;
  if (encrypted) stored = io::digest_file(file);
  std::unique_ptr<io::Source> plain = io::open_plaintext(file, identity);
  io::Source& raw = *plain;
  HashingReadAhead hashing(raw, progress);

  ObjectArchiveScan scan;
  std::map<std::string, std::pair<std::uint64_t, std::string>> seen;  // path -> size, sha256
  bool have_manifest = false;
  {
    ObjectArchiveReader reader(hashing);
    ArchiveEntry entry;
    std::vector<char> buf(1 << 20);
    while (reader.next(entry)) {
      if (have_manifest) {
        throw Error(ErrorCode::verification, "the archive has entries after its manifest: " + entry.path,
                    "it was not written by backupctl, or was altered");
      }
      if (!entry.regular) {
        throw Error(ErrorCode::verification,
                    fmt::format("the archive holds a {} ({}); backupctl archives hold only files", entry.type, entry.path),
                    "refusing it: links could point outside the target");
      }
      if (entry.path == kManifestPath) {
        std::string text;
        for (std::size_t n; (n = reader.read(buf)) > 0;) text.append(buf.data(), n);
        json j = json::parse(text, nullptr, false);
        if (j.is_discarded()) throw Error(ErrorCode::verification, "the archive's manifest is not JSON", "use another backup");
        scan.manifest = Manifest::from_json(j);
        have_manifest = true;
        continue;
      }
      io::NullSink null;
      io::Sha256Sink sha(null);
      std::uint64_t size = 0;
      for (std::size_t n; (n = reader.read(buf)) > 0;) {
        sha.write(std::span<const char>(buf.data(), n));
        size += n;
      }
      sha.finish();
      if (!seen.emplace(entry.path, std::make_pair(size, sha.hex())).second) {
        throw Error(ErrorCode::verification, "the archive holds " + entry.path + " twice", "use another backup");
      }
      scan.object_bytes += size;
    }
  }
  scan.sha256 = hashing.finish();
  scan.size = hashing.total();
  if (encrypted) {
    scan.sha256 = stored->sha256;
    scan.size = stored->size;
  }
  if (!have_manifest) {
    throw Error(ErrorCode::verification, "the archive has no manifest (it ends early?)",
                "the file is incomplete; use another backup");
  }
  std::set<std::string> named;
  for (const ManifestObject& o : scan.manifest.objects) {
    // The path is derived from bucket and key, never taken from the archive: a crafted manifest
    // cannot steer a file outside its folder.
    if (o.path != archive_path(o.bucket, o.key)) {
      throw Error(ErrorCode::verification, "the manifest maps " + o.bucket + "/" + o.key + " to " + o.path,
                  "refusing an archive whose paths do not follow from its keys");
    }
    auto it = seen.find(o.path);
    if (it == seen.end()) {
      throw Error(ErrorCode::verification, "the archive lacks " + o.bucket + "/" + o.key + " (" + o.path + ")",
                  "the file is incomplete; use another backup");
    }
    if (it->second.first != o.size || it->second.second != o.sha256) {
      throw Error(ErrorCode::verification, "the archive's copy of " + o.bucket + "/" + o.key + " does not match its manifest",
                  "the file is damaged; use another backup");
    }
    named.insert(o.path);
  }
  for (const auto& [path, _] : seen) {
    if (!named.count(path)) {
      throw Error(ErrorCode::verification, "the archive holds " + path + ", which its manifest does not name",
                  "refusing it: it was not written by backupctl, or was altered");
    }
  }
  return scan;
}

}  // namespace backupctl
