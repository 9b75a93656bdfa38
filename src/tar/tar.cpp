#include "tar/tar.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <exception>

#include "io/age.hpp"
#include "io/zstd.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl {

using nlohmann::json;

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
// Writer

struct WriterCallbacks {
  static la_ssize_t write(struct archive* a, void* client, const void* buf, size_t n) {
    auto* w = static_cast<TarWriter*>(client);
    try {
      w->m_out->write(std::span<const char>(static_cast<const char*>(buf), n));
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

TarWriter::TarWriter(io::Sink& out, TarCompression compression, int zstd_threads) {
  if (compression == TarCompression::zstd) {
    m_compressor = std::make_unique<io::ZstdCompressSink>(out, 3, zstd_threads);
  } else if (compression == TarCompression::gzip) {
    auto gz = std::make_unique<io::GzipCompressSink>(out, 1);
    m_gzip = gz.get();
    m_compressor = std::move(gz);
  }
  m_out = m_compressor ? m_compressor.get() : &out;
  std::unique_ptr<struct archive, int (*)(struct archive*)> a(archive_write_new(), archive_write_free);
  archive_write_set_format_pax_restricted(a.get());
  archive_write_set_bytes_per_block(a.get(), 0);  // no 10 KiB blocking: we buffer downstream
  if (archive_write_open(a.get(), this, nullptr, WriterCallbacks::write, nullptr) != ARCHIVE_OK) {
    archive_failure(a.get(), m_error, "cannot start the archive");
  }
  m_archive = a.release();
}

TarWriter::~TarWriter() {
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

void TarWriter::add_directory(const std::string& path, unsigned mode, std::time_t mtime,
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

void TarWriter::add_symlink(const std::string& path, const std::string& target, std::time_t mtime,
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

void TarWriter::begin(const std::string& path, std::uint64_t size, std::time_t mtime,
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

void TarWriter::write(std::span<const char> data) {
  while (!data.empty()) {
    la_ssize_t n = archive_write_data(m_archive, data.data(), data.size());
    if (n < 0) archive_failure(m_archive, m_error, "cannot write to the archive");
    m_written += static_cast<std::uint64_t>(n);
    data = data.subspan(static_cast<std::size_t>(n));
  }
}

void TarWriter::end() {
  if (m_written != m_declared) {
    throw Error(ErrorCode::internal,
                fmt::format("archive entry size mismatch: declared {}, wrote {}", m_declared, m_written));
  }
  if (archive_write_finish_entry(m_archive) != ARCHIVE_OK) archive_failure(m_archive, m_error, "cannot end an entry");
  m_in_entry = false;
}

void TarWriter::finish(const Manifest& manifest) {
  std::string text = manifest.to_json().dump(1) + "\n";
  begin(kManifestPath, text.size(), std::time(nullptr), true);
  write(std::span<const char>(text.data(), text.size()));
  end();
  close();
}

void TarWriter::close() {
  if (archive_write_close(m_archive) != ARCHIVE_OK) archive_failure(m_archive, m_error, "cannot close the archive");
  m_out->finish();
}

// ---------------------------------------------------------------------------------------------
// Reader

struct ReaderCallbacks {
  static la_ssize_t read(struct archive* a, void* client, const void** buf) {
    auto* r = static_cast<TarReader*>(client);
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

TarReader::TarReader(io::Source& in) : m_in(in), m_buf(1 << 20) {
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

TarReader::~TarReader() {
  if (m_archive) archive_read_free(m_archive);
}

bool TarReader::next(TarEntry& entry) {
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

std::size_t TarReader::read(std::span<char> buf) {
  la_ssize_t n = archive_read_data(m_archive, buf.data(), buf.size());
  if (n < 0) throw damaged(m_archive, m_error);
  return static_cast<std::size_t>(n);
}

}  // namespace backupctl
