#include "command/verify.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "tar/attachment_scan.hpp"
#include "tar/tar.hpp"
#include "catalog/catalog.hpp"
#include "catalog/meta.hpp"
#include "catalog/naming.hpp"
#include "io/age.hpp"
#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "pg/dump_file.hpp"
#include "pg/tools.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/process.hpp"
#include "util/time.hpp"

namespace backupctl {
namespace {

int dump_major(const Meta& meta) {
  std::string v = json_string(meta.source, "pg_dump_version");
  auto parsed = parse_tool_version("(PostgreSQL) " + v);
  return parsed ? parsed->major : 0;
}

Error sha_mismatch(const std::string& expected, const std::string& actual) {
  return Error(ErrorCode::verification,
               fmt::format("sha256 mismatch: the meta says {}, the file hashes to {}",
                           expected.substr(0, 16) + "…", actual.substr(0, 16) + "…"),
               "the file changed after it was written (disk error, truncation, tampering); use "
               "another backup");
}

std::string check_db(const Config& config, const fs::path& file, const Meta& meta,
                     Progress& progress, bool quick) {
  auto format = db_format_of(file);
  if (!format) throw Error(ErrorCode::verification, "not a database backup file name");
  std::optional<PgTool> pg_restore;
  if (is_custom(*format)) pg_restore = find_pg_tool("pg_restore", dump_major(meta), config);
  DumpScan scan = scan_dump(file, *format, pg_restore ? &*pg_restore : nullptr, progress,
                                     config.age_identity);
  if (scan.sha256 != meta.sha256) throw sha_mismatch(meta.sha256, scan.sha256);
  std::string detail = "sha256 ok";
  if (*format == DbFormat::custom_zst) detail += fmt::format(", zstd frames ok ({} decompressed)", scan.decompressed);
  if (*format == DbFormat::sql_gz) detail += fmt::format(", gzip ok ({} decompressed)", scan.decompressed);
  if (is_custom(*format)) detail += fmt::format(", {} TOC entries", scan.toc_entries);
  if (is_custom(*format) && !quick) {
    // The sha256 proves the bytes are the ones the backup wrote, not that pg_dump wrote good ones
    // (or that the meta was not rewritten to match damaged bytes): every data block is decoded.
    DumpDecode decoded = decode_dump(file, *format, *pg_restore, progress, config.age_identity);
    detail += fmt::format(", every data block decoded ({} tables, {} rows)", decoded.tables, decoded.rows);
  }
  if (meta.parts.contains("roles")) {
    const auto& roles = meta.parts["roles"];
    auto part = meta_part_file(file, meta, "roles");
    if (!part) {
      throw Error(ErrorCode::verification, "the roles file the meta names is missing",
                  "restoring onto a fresh server may miss roles; the dump itself may be fine");
    }
    fs::path roles_path = *part;
    io::FileDigest d = io::digest_file(roles_path.string());
    if (d.sha256 != json_string(roles, "sha256")) {
      throw Error(ErrorCode::verification,
                  "the roles file " + roles_path.filename().string() + " does not match its sha256",
                  "restoring onto a fresh server may miss roles; the dump itself is fine");
    }
    detail += ", roles ok";
  }
  return detail;
}

// A base backup: its sha256, then its zstd stream decoded to its end (each frame's checksum).
std::string check_base(const Config& config, const fs::path& file, const Meta& meta) {
  io::FileDigest d = io::digest_file(file.string());
  if (d.sha256 != meta.sha256) throw sha_mismatch(meta.sha256, d.sha256);
  auto source = io::open_plaintext(file, config.age_identity);
  io::NullSink null;
  io::CountSink count(null);
  io::ZstdDecompressSink z(count);
  io::copy(*source, z);
  z.finish();
  return fmt::format("sha256 ok, zstd frames ok ({} decompressed)", human_bytes(count.bytes()));
}

}  // namespace

VerifyVerdict verify_backup(const Config& config, const fs::path& file, Progress& progress, VerifyDepth depth) {
  const bool quick = depth == VerifyDepth::quick;
  VerifyVerdict v;
  v.file = file;
  auto parsed = parse_backup_filename(file.filename().string());
  v.kind = parsed ? std::string(kind_name(parsed->kind)) : "unknown";
  fs::path meta_path = file;
  meta_path += ".meta";
  std::optional<Meta> meta;
  try {
    struct stat st{};
    if (::stat(file.c_str(), &st) != 0) throw_errno("cannot read " + file.string());
    if (!S_ISREG(st.st_mode)) {
      throw Error(ErrorCode::verification, S_ISDIR(st.st_mode) ? "a directory, not a backup file" : "not a regular file",
                  "give backup files; `backupctl list` shows them");
    }
    std::error_code ec;
    if (!fs::exists(meta_path, ec)) {
      throw Error(ErrorCode::verification,
                  "no " + meta_path.filename().string() + ": the checksum cannot be checked",
                  "a backup made by backupctl always has one; check by hand with pg_restore --list");
    }
    meta = read_meta(meta_path);
    v.kind = meta->kind;
    if (st.st_size == 0) {
      throw Error(ErrorCode::verification, "the file is empty", "use another backup");
    }
    if (static_cast<std::uint64_t>(st.st_size) != meta->size) {
      throw Error(ErrorCode::verification,
                  fmt::format("size {} differs from the meta's {}", st.st_size, meta->size),
                  "the file was truncated or changed; use another backup");
    }
    progress.start("verify " + file.filename().string());
    if (io::is_encrypted(file) && config.age_identity.empty()) {
      // The meta's sha256 is of the stored (encrypted) file: checkable without the key.
      io::FileDigest d = io::digest_file(file.string());
      if (d.sha256 != meta->sha256) throw sha_mismatch(meta->sha256, d.sha256);
      v.detail = "sha256 ok (encrypted: set BACKUP_AGE_IDENTITY to check the contents too)";
    } else if (meta->kind == "db") {
      v.detail = check_db(config, file, *meta, progress, quick);
    } else if (meta->kind == "base") {
      v.detail = check_base(config, file, *meta);
    } else if (meta->kind == "objects") {
      AttachmentTarScan scan = scan_attachment_tar(file.string(), progress, config.age_identity);
      if (scan.sha256 != meta->sha256) throw sha_mismatch(meta->sha256, scan.sha256);
      v.detail = fmt::format("sha256 ok, archive reads to its end, {} objects match the manifest",
                             scan.manifest.objects.size());
    } else {
      io::FileDigest d = io::digest_file(file.string());
      if (d.sha256 != meta->sha256) throw sha_mismatch(meta->sha256, d.sha256);
      v.detail = "sha256 ok";
    }
    progress.finish();
    v.ok = true;
  } catch (const Error& e) {
    progress.finish();
    if (e.code() == ErrorCode::interrupted) throw;
    v.ok = false;
    v.detail = e.what();
  }
  if (meta) {
    meta->verification = Verification{iso8601(Clock::now()), v.ok, v.detail};
    try {
      write_meta(meta_path, *meta);
    } catch (const Error& e) {
      spdlog::warn("verify: cannot record the result in {}: {}", meta_path.string(), e.what());
    }
  }
  return v;
}

std::vector<fs::path> select_backups(const Config& config, VerifySelection which) {
  std::vector<fs::path> out;
  std::set<std::pair<Kind, std::string>> seen;
  const auto now = Clock::now();
  for (const CatalogEntry& e : scan_catalog(config.backup_dir)) {
    if (which == VerifySelection::latest && (e.wrong_clock(now) || !seen.insert({e.kind, e.source()}).second)) continue;
    out.push_back(e.path);
  }
  return out;
}

}  // namespace backupctl
