// Database backup files as archives: their formats, a one-pass check (checksum plus "it reads"),
// streaming their contents, and the SQL that recreates the database-level properties they carry.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "io/pipeline.hpp"
#include "io/zstd.hpp"
#include "pg/tools.hpp"
#include "util/progress.hpp"

namespace backupctl {

enum class DbFormat {
  custom,      // .dump      pg_dump -Fc
  custom_zst,  // .dump.zst  pg_dump -Fc, compressed with zstd
  sql,         // .sql       plain SQL (made elsewhere)
  sql_gz,      // .sql.gz    plain SQL, gzip
};

// By file name (a trailing ".age" means encrypted, see io/age.hpp); nullopt for anything else.
std::optional<DbFormat> db_format_of(const std::filesystem::path& file);
std::string_view db_format_name(DbFormat format);
inline bool is_custom(DbFormat f) { return f == DbFormat::custom || f == DbFormat::custom_zst; }

struct DumpScan {
  std::uint64_t size = 0;
  std::string sha256;
  std::string toc;  // `pg_restore --create --list` (custom formats)
  int toc_entries = 0;
  std::uint64_t decompressed = 0;  // bytes after zstd/gzip
};

// How much of a .dump.zst scan_dump() decompresses.
enum class ZstdScan {
  every_frame,  // all of it: `verify`, and restores of a file without a meta
  toc_only,     // what pg_restore needs for the table of contents; the rest is only hashed. For a
                // restore whose sha256 is checked against the meta: the restore itself decodes
                // every frame before anything is swapped, so decoding them here too would only
                // cost time (1.1 s of CPU per GB of archive).
};

// Reads the whole file once: its sha256, and whether it reads: the table of contents through
// `pg_restore --create --list` for custom formats (fed by in-process zstd for .dump.zst, which also
// checks every frame unless `zstd` says toc_only), every gzip member for .sql.gz. Throws
// Error(verification) when it does not.
// REQUIRES: pg_restore is set for custom formats.
// An encrypted file (.age) is hashed as stored, then its plaintext (decrypted with `identity`) is
// checked the same way.
//
// With `known_sha256` (the digest the caller took of these very bytes as it wrote them: a
// restore --remote's fetch), the file is read only as far as its table of contents, and the scan
// reports that sha256 and the file's size: hashing it again would cost a pass over the file for
// nothing new. The restore decodes (and age authenticates) every byte before the swap anyway.
// A file still arriving (io::IncomingFile) is read the same way, with or without a known sha256
// (pg_dump's output, whose end the restore waits for: reading it whole here would wait for it).
DumpScan scan_dump(const std::filesystem::path& file, DbFormat format,
                            const PgTool* pg_restore, Progress& progress,
                            const std::filesystem::path& identity = {},
                            ZstdScan zstd = ZstdScan::every_frame, const std::string& known_sha256 = {});

// Decodes every data block of a custom-format archive (.dump, .dump.zst; decrypted with
// `identity`): each zlib stream inflated and checked (Adler-32), each table's COPY data read and
// its lines counted. Archive versions backupctl's reader does not know (pg_dump 16+) are read
// whole by `pg_restore --file=/dev/null` instead. Throws Error(verification) naming the problem.
struct DumpDecode {
  int tables = 0;
  std::int64_t rows = 0;
  std::string how;  // "backupctl's reader" or "pg_restore"
};
DumpDecode decode_dump(const std::filesystem::path& file, DbFormat format, const PgTool& pg_restore,
                                Progress& progress, const std::filesystem::path& identity = {});

// A custom-format dump's bytes as pg_dump wrote them, to read: decrypted (.age) and un-zstd-ed
// (.dump.zst), the file's bytes read so far reported to `report`. Every reader of a dump's
// custom-format bytes opens it here. The last reader of a dump still arriving from the remote says
// so (`Reader::last`): the arriving file then lets go of what has been read (io/incoming.hpp).
class DumpStream {
 public:
  enum class Reader { probe, last };
  DumpStream(const std::filesystem::path& file, DbFormat format, const std::filesystem::path& identity,
             Reader reader = Reader::probe, std::function<void(std::uint64_t)> report = nullptr);
  io::Source& source() { return *m_source; }

  // One look at the header: whether backupctl's reader (DumpInflater) knows the dump's version
  // (pg_dump up to 15); nullopt when there is no custom-format header at all.
  static std::optional<bool> inflatable(const std::filesystem::path& file, DbFormat format,
                                        const std::filesystem::path& identity);

 private:
  std::unique_ptr<io::Source> m_plain;
  std::optional<io::ProgressSource> m_counted;
  std::optional<io::ZstdSource> m_unzstd;
  io::Source* m_source = nullptr;
};

// Streams the file's payload (decrypted, decompressed: custom-format bytes or SQL text) into `sink`.
void stream_dump(const std::filesystem::path& file, DbFormat format, io::Sink& sink,
                       Progress& progress, const std::filesystem::path& identity = {});

// The database the archive was dumped from, from its DATABASE entry: name and owner.
struct DumpedDatabase {
  std::string name;
  std::string owner;
};
std::optional<DumpedDatabase> dumped_database(const std::string& toc);

// SQL (for psql, connected to a maintenance database) that creates database `new_name` with the
// archive's database-level properties: encoding, locale, owner, comment, grants, `ALTER DATABASE
// ... SET` and `ALTER ROLE ... IN DATABASE ... SET`. It is pg_restore's own --create output for
// those entries, with the database renamed.
std::string database_creation_sql(const std::filesystem::path& file, DbFormat format,
                                  const PgTool& pg_restore, const std::string& toc,
                                  const std::string& new_name,
                                  const std::filesystem::path& identity = {});

// Renames database `from` to `to` in pg_restore's SQL for the database entries and drops its
// \connect lines (every statement there works from any database). Exposed for tests.
std::string rename_database_in_sql(const std::string& sql, const std::string& from,
                                   const std::string& to);

}  // namespace backupctl
