#include "pg/dump_file.hpp"

#include <fmt/format.h>

#include <fstream>

#include "io/age.hpp"
#include "io/gzip.hpp"
#include "io/incoming.hpp"
#include "io/zstd.hpp"
#include "pg/dump_parser.hpp"
#include "pg/connection.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace backupctl {

namespace fs = std::filesystem;

std::optional<DbFormat> db_format_of(const fs::path& file) {
  std::string name = file.filename().string();
  if (io::is_encrypted(file)) name = name.substr(0, name.size() - 4);
  auto ends = [&](std::string_view s) { return name.size() > s.size() && name.ends_with(s); };
  if (ends(".dump.zst")) return DbFormat::custom_zst;
  if (ends(".dump")) return DbFormat::custom;
  if (ends(".sql.gz")) return DbFormat::sql_gz;
  if (ends(".sql")) return DbFormat::sql;
  return std::nullopt;
}

std::string_view db_format_name(DbFormat format) {
  switch (format) {
    case DbFormat::custom: return "custom";
    case DbFormat::custom_zst: return "custom+zstd";
    case DbFormat::sql: return "sql";
    case DbFormat::sql_gz: return "sql+gzip";
  }
  return "custom";
}

namespace {

int count_toc_entries(const std::string& listing) {
  int n = 0;
  std::size_t pos = 0;
  while (pos < listing.size()) {
    std::size_t nl = listing.find('\n', pos);
    if (nl == std::string::npos) nl = listing.size();
    if (nl > pos && listing[pos] != ';') ++n;
    pos = nl + 1;
  }
  return n;
}

// Runs pg_restore with `args` on the archive: on the file itself (.dump), or on the decompressed
// stream fed to its stdin (.dump.zst). Returns its stdout. `feed` gets the sink for stdin.
std::string run_pg_restore(const PgTool& pg_restore, std::vector<std::string> args,
                           const fs::path& file,
                           const std::function<void(io::Sink&)>& feed, std::string_view what) {
  MemFile out("pg_restore-out"), err("pg_restore-err");
  SpawnOptions spawn{.argv = pg_restore.argv(args)};
  // A file still arriving is not on disk under its name: pg_restore reads it on stdin as it comes.
  std::function<void(io::Sink&)> incoming_feed;
  if (!feed && io::is_incoming(file)) {
    incoming_feed = [&](io::Sink& to_pg_restore) { io::copy(*io::IncomingFile::find(file)->open(), to_pg_restore); };
  }
  const std::function<void(io::Sink&)>& feeder = feed ? feed : incoming_feed;
  // A pg_restore in the compose service cannot open a file of this host: it reads it on stdin.
  Fd whole;
  if (feeder) {
    spawn.in = Stdio::pipe;
  } else if (pg_restore.in_service()) {
    whole = open_read(file);
    spawn.in_fd = whole.get();
  } else {
    spawn.argv.push_back(file.string());
  }
  spawn.out_fd = out.fd();
  spawn.err_fd = err.fd();
  Child child = Child::spawn(spawn);
  if (feeder) {
    io::ChildStdinSink sink(child.stdin_pipe(), "pg_restore");
    feeder(sink);
  }
  ExitStatus status = child.wait();
  if (!status.ok()) {
    Error e = pg_tool_failure("pg_restore", status, err.read_all(), what);
    throw Error(ErrorCode::verification, e.what(), e.hint());
  }
  return out.read_all();
}

// Passes bytes on while the next sink wants them, then drops them (a pg_restore --list that has
// read the table of contents and exited).
class WhileWantedSink : public io::Sink {
 public:
  explicit WhileWantedSink(io::Sink& next) : m_next(next) {}
  void write(std::span<const char> data) override {
    if (m_next.wants_more()) m_next.write(data);
  }
  void finish() override {
    if (m_next.wants_more()) m_next.finish();
  }

 private:
  io::Sink& m_next;
};

}  // namespace

DumpStream::DumpStream(const fs::path& file, DbFormat format, const fs::path& identity, Reader reader,
                       std::function<void(std::uint64_t)> report) {
  m_plain = io::open_plaintext(file, identity);
  if (reader == Reader::last) {
    if (auto incoming = io::IncomingFile::find(file)) incoming->release_as_read();
  }
  m_source = &m_counted.emplace(*m_plain, std::move(report));
  if (format == DbFormat::custom_zst) m_source = &m_unzstd.emplace(*m_source);
}

std::optional<bool> DumpStream::inflatable(const fs::path& file, DbFormat format, const fs::path& identity) {
  DumpStream stream(file, format, identity);
  auto header = read_dump_header(stream.source());
  if (!header) return std::nullopt;
  return DumpInflater::supports(header->vmaj, header->vmin);
}

void stream_dump(const fs::path& file, DbFormat format, io::Sink& sink, Progress& progress,
                       const fs::path& identity) {
  std::unique_ptr<io::Source> plain = io::open_plaintext(file, identity);
  auto report = [&](std::uint64_t n) { progress.update(n); };
  switch (format) {
    case DbFormat::custom_zst: {
      io::ZstdDecompressSink unzstd(sink);
      io::copy(*plain, unzstd, report);
      break;
    }
    case DbFormat::sql_gz: {
      io::GzipDecompressSink gunzip(sink);
      io::copy(*plain, gunzip, report);
      break;
    }
    default:
      io::copy(*plain, sink, report);
  }
}

namespace {

// scan_dump() of a custom-format file whose sha256 the caller already has: only the table of
// contents is read (pg_restore stops reading after it, and copy() with it).
DumpScan scan_toc_only(const fs::path& file, DbFormat format, const PgTool& pg_restore, Progress& progress,
                       const fs::path& identity, const std::string& known_sha256) {
  DumpScan scan;
  auto report = [&](std::uint64_t n) { progress.update(n); };
  std::unique_ptr<io::Source> source = io::open_plaintext(file, identity);
  std::function<void(io::Sink&)> feed;
  if (format == DbFormat::custom_zst) {
    feed = [&](io::Sink& to_pg_restore) {
      io::ZstdDecompressSink unzstd(to_pg_restore);
      io::copy(*source, unzstd, report);
    };
  } else if (io::is_encrypted(file)) {
    feed = [&](io::Sink& to_pg_restore) { io::copy(*source, to_pg_restore, report); };
  }
  scan.toc = run_pg_restore(pg_restore, {"--create", "--list"}, file, feed,
                            "the archive's table of contents does not read");
  auto incoming = io::IncomingFile::find(file);
  scan.size = incoming ? incoming->size() : fs::file_size(file);
  scan.sha256 = known_sha256;
  scan.toc_entries = count_toc_entries(scan.toc);
  return scan;
}

}  // namespace

DumpScan scan_dump(const fs::path& file, DbFormat format, const PgTool* pg_restore,
                            Progress& progress, const fs::path& identity, ZstdScan zstd,
                            const std::string& known_sha256) {
  if ((!known_sha256.empty() || io::is_incoming(file)) && is_custom(format)) {
    return scan_toc_only(file, format, *pg_restore, progress, identity, known_sha256);
  }
  DumpScan scan;
  auto report = [&](std::uint64_t n) { progress.update(n); };
  // The stored bytes are hashed: in the same pass as the checks when they are the plaintext, in a
  // pass of their own when the file is encrypted.
  const bool encrypted = io::is_encrypted(file);
  std::optional<io::FileDigest> stored;
  if (encrypted) stored = io::digest_file(file.string());
  std::unique_ptr<io::Source> source = io::open_plaintext(file, identity);
  io::NullSink null;
  io::Sha256Sink hash(null);
  io::CountSink count(hash);
  io::NullSink ignore;
  io::Sink& observe = encrypted ? static_cast<io::Sink&>(ignore) : count;
  switch (format) {
    case DbFormat::custom:
      if (!encrypted) {
        io::copy(*source, count, report);
        scan.toc = run_pg_restore(*pg_restore, {"--create", "--list"}, file, nullptr,
                                  "the archive's table of contents does not read");
        break;
      }
      [[fallthrough]];
    case DbFormat::custom_zst: {
      scan.toc = run_pg_restore(
          *pg_restore, {"--create", "--list"}, file,
          [&](io::Sink& to_pg_restore) {
            if (format == DbFormat::custom) {
              io::TeeSink tee(observe, to_pg_restore);
              io::copy(*source, tee, report);
              return;
            }
            io::ZstdDecompressSink unzstd(to_pg_restore);
            if (zstd == ZstdScan::toc_only) {
              WhileWantedSink until_toc(unzstd);
              io::TeeSink tee(observe, until_toc);
              io::copy(*source, tee, report);
              return;
            }
            io::TeeSink tee(observe, unzstd);
            io::copy(*source, tee, report);
            scan.decompressed = unzstd.decompressed_bytes();
          },
          "the archive's table of contents does not read");
      // pg_restore stops reading after the table of contents; read what is left so the whole
      // file (and every zstd frame, and age's authentication) is checked.
      std::vector<char> buf(1 << 20);
      for (std::size_t n; (n = source->read(buf)) > 0;) observe.write(std::span<const char>(buf.data(), n));
      break;
    }
    case DbFormat::sql_gz: {
      io::NullSink sql;
      io::CountSink decompressed(sql);
      io::GzipDecompressSink gunzip(decompressed);
      io::TeeSink tee(observe, gunzip);
      io::copy(*source, tee, report);
      scan.decompressed = decompressed.bytes();
      break;
    }
    case DbFormat::sql:
      io::copy(*source, observe, report);
      break;
  }
  if (encrypted) {
    scan.size = stored->size;
    scan.sha256 = stored->sha256;
  } else {
    // copy() finished the chain, which finished the hash.
    scan.size = count.bytes();
    scan.sha256 = hash.hex();
  }
  scan.toc_entries = count_toc_entries(scan.toc);
  return scan;
}

DumpDecode decode_dump(const fs::path& file, DbFormat format, const PgTool& pg_restore, Progress& progress,
                                const fs::path& identity) {
  DumpDecode out;
  std::optional<bool> supported = DumpStream::inflatable(file, format, identity);
  if (!supported) throw Error(ErrorCode::verification, "not a custom-format archive (no PGDMP header)", "use another backup");
  DumpStream stream(file, format, identity, DumpStream::Reader::probe,
                    [&](std::uint64_t n) { progress.update(n); });
  if (*supported) {
    io::NullSink null;
    DumpInflater reader(null);
    reader.run(stream.source());
    for (const auto& [id, t] : reader.tables()) {
      ++out.tables;
      out.rows += t.rows;
    }
    out.how = "backupctl's reader";
    return out;
  }
  run_pg_restore(pg_restore, {"--file=/dev/null"}, file,
                 [&](io::Sink& to_pg_restore) { io::copy(stream.source(), to_pg_restore); },
                 "a data block does not read");
  out.how = "pg_restore";
  return out;
}

std::optional<DumpedDatabase> dumped_database(const std::string& toc) {
  // "3339; 1262 16384 DATABASE - x1 postgres": desc DATABASE, namespace "-", tag, owner.
  std::size_t pos = 0;
  while (pos < toc.size()) {
    std::size_t nl = toc.find('\n', pos);
    std::string line = toc.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? toc.size() : nl + 1;
    auto at = line.find(" DATABASE - ");
    if (line.empty() || line[0] == ';' || at == std::string::npos) continue;
    std::string rest = line.substr(at + 12);  // "<name> <owner>"
    auto sp = rest.rfind(' ');
    if (sp == std::string::npos) continue;
    return DumpedDatabase{rest.substr(0, sp), rest.substr(sp + 1)};
  }
  return std::nullopt;
}

std::string rename_database_in_sql(const std::string& sql, const std::string& from,
                                   const std::string& to) {
  // pg_dump writes the name bare when it is a simple lowercase identifier, else quoted.
  std::vector<std::string> forms = {quote_ident(from)};
  bool simple = !from.empty() && !(from[0] >= '0' && from[0] <= '9') &&
                from.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos;
  if (simple) forms.push_back(from);
  const std::string key = "DATABASE ";
  std::string out;
  bool in_literal = false;  // inside '...' (a comment's text may span lines)
  std::size_t pos = 0;
  while (pos < sql.size()) {
    std::size_t nl = sql.find('\n', pos);
    std::string line = sql.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? sql.size() : nl + 1;
    if (!in_literal && line.starts_with("\\connect")) continue;
    std::string result;
    std::size_t i = 0;
    while (i < line.size()) {
      if (line[i] == '\'') {
        in_literal = !in_literal;
        result += line[i++];
        continue;
      }
      if (!in_literal && line.compare(i, key.size(), key) == 0) {
        result += key;
        i += key.size();
        for (const std::string& form : forms) {
          std::size_t end = i + form.size();
          if (line.compare(i, form.size(), form) == 0 &&
              (end == line.size() || line[end] == ' ' || line[end] == ';')) {
            result += quote_ident(to);
            i = end;
            break;
          }
        }
        continue;
      }
      result += line[i++];
    }
    out += result + "\n";
  }
  return out;
}

std::string database_creation_sql(const fs::path& file, DbFormat format, const PgTool& pg_restore,
                                  const std::string& toc, const std::string& new_name,
                                  const fs::path& identity) {
  auto db = dumped_database(toc);
  if (!db) {
    throw Error(ErrorCode::verification, "the archive has no DATABASE entry",
                "it was not made by pg_dump of a whole database; restore it with pg_restore by hand");
  }
  // Keep only the database-level entries: DATABASE, DATABASE PROPERTIES, and the COMMENT, ACL and
  // SECURITY LABEL entries on the database.
  std::string list;
  std::size_t pos = 0;
  while (pos < toc.size()) {
    std::size_t nl = toc.find('\n', pos);
    std::string line = toc.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? toc.size() : nl + 1;
    if (line.empty() || line[0] == ';') continue;
    if (line.find(" DATABASE - ") != std::string::npos ||
        line.find(" DATABASE PROPERTIES - ") != std::string::npos ||
        line.find(" - DATABASE ") != std::string::npos) {
      list += line + "\n";
    }
  }
  TempDir tmp("backupctl-list");
  fs::path list_file = tmp.path() / "database.list";
  write_file_atomic(list_file, list);
  ToolFiles service_files(pg_restore);  // a pg_restore in the compose service reads its copy
  std::vector<std::string> args = {"--create", "--use-list=" + service_files.place(list_file), "--file=-"};
  std::string sql;
  if (format == DbFormat::custom_zst || io::is_encrypted(file)) {
    sql = run_pg_restore(pg_restore, args, file,
                         [&](io::Sink& to_pg_restore) {
                           NoProgress none;
                           stream_dump(file, format, to_pg_restore, none, identity);
                         },
                         "cannot read the database entries");
  } else {
    sql = run_pg_restore(pg_restore, args, file, nullptr, "cannot read the database entries");
  }
  return rename_database_in_sql(sql, db->name, new_name);
}

}  // namespace backupctl
