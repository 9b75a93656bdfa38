#include "command/backup_base.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <regex>

#include "catalog/catalog.hpp"
#include "catalog/naming.hpp"
#include "util/json.hpp"
#include "io/atomic_file.hpp"
#include "pg/connection.hpp"
#include "pg/tools.hpp"
#include "pg/wal.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace {

// pg_basebackup -v says where the backup's WAL starts and ends:
//   pg_basebackup: write-ahead log start point: 0/2000028 on timeline 1
//   pg_basebackup: write-ahead log end point: 0/2000100
struct BackupPoints {
  std::string start_lsn, stop_lsn;
  std::uint32_t timeline = 0;
};

BackupPoints parse_points(const std::string& stderr_text) {
  BackupPoints p;
  std::smatch m;
  static const std::regex start(R"(write-ahead log start point: ([0-9A-Fa-f]+/[0-9A-Fa-f]+) on timeline ([0-9]+))");
  static const std::regex end(R"(write-ahead log end point: ([0-9A-Fa-f]+/[0-9A-Fa-f]+))");
  if (std::regex_search(stderr_text, m, start)) {
    p.start_lsn = m[1];
    p.timeline = static_cast<std::uint32_t>(std::stoul(m[2]));
  }
  if (std::regex_search(stderr_text, m, end)) p.stop_lsn = m[1];
  if (p.start_lsn.empty() || p.stop_lsn.empty() || !parse_lsn(p.start_lsn) || !parse_lsn(p.stop_lsn)) {
    throw Error(ErrorCode::tool_failed, "pg_basebackup did not say where its WAL starts and ends",
                "the incomplete base backup was removed; run it again (pg_basebackup -v output changed?)");
  }
  return p;
}

}  // namespace

std::optional<Clock::time_point> parse_precise_time(const std::string& text) {
  auto t = parse_iso8601(text);
  const auto dot = text.find('.');
  if (!t || dot == std::string::npos) return t;
  const auto end = text.find_first_not_of("0123456789", dot + 1);
  std::string digits = text.substr(dot + 1, end == std::string::npos ? std::string::npos : end - dot - 1);
  if (digits.empty() || digits.size() > 9) return std::nullopt;
  digits.resize(9, '0');
  return *t + std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(std::stoll(digits)));
}

BaseBackup base_backup_of(const Meta& meta, const fs::path& file) {
  BaseBackup b;
  b.meta = meta;
  b.file = file;
  if (b.meta.kind != "base" || b.meta.file != b.file.filename().string()) {
    throw Error(ErrorCode::verification, "the meta does not describe " + b.file.filename().string());
  }
  const auto& s = b.meta.source;
  try {
    b.sysid = std::stoull(json_string(s, "system_identifier"));
    b.timeline = s.at("timeline").get<std::uint32_t>();
    b.segment_size = s.at("wal_segment_size").get<std::uint64_t>();
    b.major = s.at("server_major").get<int>();
  } catch (const std::exception& e) {
    throw Error(ErrorCode::verification, std::string("its meta is malformed (") + e.what() + ")");
  }
  auto start = parse_lsn(json_string(s, "start_lsn")), stop = parse_lsn(json_string(s, "stop_lsn"));
  // The server's clock when the backup had ended (what a target time is compared with:
  // PostgreSQL's commit times are the server's); older metas: this host's, a second later.
  auto finished = s.contains("stop_time") ? parse_precise_time(json_string(s, "stop_time"))
                                          : parse_iso8601(b.meta.finished_at);
  if (!s.contains("stop_time") && finished) *finished += std::chrono::seconds(1);
  if (!start || !stop || !finished || *stop < *start || b.timeline == 0 ||
      !parse_wal_segment_name("000000010000000000000001", b.segment_size)) {
    throw Error(ErrorCode::verification, "its WAL positions, timeline, segment size or time are not readable");
  }
  if (auto d = s.find("databases"); d != s.end() && d->is_object()) {
    for (const auto& [name, oid] : d->items()) {
      if (oid.is_number_unsigned() && oid.get<std::uint64_t>() <= 0xffffffffu) b.databases[name] = oid.get<std::uint32_t>();
    }
  }
  b.start = *start;
  b.stop = *stop;
  b.finished = *finished;
  return b;
}

std::string BaseBackup::first_segment() const { return segment_of(start, timeline, segment_size).str(segment_size); }

bool base_backup_due(const Config& config, Clock::time_point now) {
  std::optional<Clock::time_point> newest;
  for (const auto& b : list_base_backups(config)) {
    if (!newest || b.finished > *newest) newest = b.finished;
  }
  // A few minutes' slack: yesterday's 03:00 run ended a little after 03:00.
  return !newest || now - *newest >= std::chrono::hours(config.base_every_hours) - std::chrono::minutes(10);
}

std::vector<BaseBackup> list_base_backups(const Config& config) {
  std::vector<BaseBackup> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(config.kind_dir("base"), ec)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with("base_") || !name.ends_with(".meta")) continue;
    try {
      BaseBackup b = base_backup_of(read_meta(e.path()), e.path().parent_path() / name.substr(0, name.size() - 5));
      if (!fs::is_regular_file(fs::symlink_status(b.file, ec))) throw Error(ErrorCode::not_found, "the file is not there");
      out.push_back(std::move(b));
    } catch (const Error& err) {
      if (err.code() == ErrorCode::interrupted) throw;
      spdlog::warn("restore: base backup {} passed over: {}", name, err.what());
    } catch (const std::exception& err) {
      spdlog::warn("restore: base backup {} passed over: its meta is malformed ({})", name, err.what());
    }
  }
  return out;
}

BackupResult backup_base(const Config& config, const PgTarget& target, Progress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  PgConnection conn = PgConnection::open(target);
  const std::string version = conn.server_version();
  const int major = conn.server_major();
  const std::uint64_t segment_size = std::stoull(conn.scalar("SELECT setting::bigint * (CASE unit WHEN 'B' THEN 1 WHEN 'kB' THEN 1024 WHEN 'MB' THEN 1048576 ELSE 1 END) FROM pg_settings WHERE name = 'wal_segment_size'"));
  const SystemIdentity id = PgConnection::open(target, Session::replication).identify_system();
  const PgTool tool = find_pg_tool("pg_basebackup", major, config);

  const fs::path dir = config.kind_dir("base");
  make_dirs(dir, 0700);
  const std::string suffix = std::string(".tar.zst") + (config.age_recipients.empty() ? "" : ".age");
  ReservedFiles files = reserve_backup_files(dir, [&](std::string_view ts) {
    return std::vector<std::string>{fmt::format("base_{}_{}{}", id.system_identifier, ts, suffix)};
  });
  io::AtomicFileSink& file = files.sinks[0];
  spdlog::info("backup base: {} of {} (cluster {}) into {}", tool.describe(), conn.describe(), id.system_identifier,
               file.partial_path().string());
  // -X fetch: the WAL the backup needs to be consistent goes into its tar (the receiver's slot
  // keeps it on the server until then); -c fast: the checkpoint now, not spread over minutes.
  const DbCompression zstd{DbCompression::Method::zstd, 3};
  progress.start("pg_basebackup");
  StreamResult out = stream_pg_program(
      tool.name(),
      {.argv = tool.argv({"-D", "-", "-Ft", "-X", "fetch", "-c", "fast", "-v", "--no-password"}), .env = target.child_env()},
      file, &zstd, config.zstd_threads, config.age_recipients, progress, "the incomplete base backup was removed");
  progress.finish();
  const BackupPoints points = parse_points(out.stderr_text);
  // The server's clock now: the backup has ended, so a moment from here on can be restored from it.
  const std::string stop_time =
      conn.scalar("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");

  nlohmann::json databases = nlohmann::json::object();
  for (const auto& row : conn.query("SELECT datname, oid::bigint FROM pg_database")) databases[*row[0]] = std::stoull(*row[1]);

  Meta meta = new_backup_meta("base", file.final_path(), out.size, out.sha256, config.profile, files.time, seconds_since(t0),
                              new_set_id(files.time), config.age_recipients);
  meta.format = "pg_basebackup_tar";
  meta.compression = zstd.str();
  meta.source = {{"system_identifier", std::to_string(id.system_identifier)},
                 {"timeline", points.timeline},
                 {"start_lsn", points.start_lsn},
                 {"stop_lsn", points.stop_lsn},
                 {"stop_time", stop_time},
                 {"wal_segment_size", segment_size},
                 {"server", conn.describe()},
                 {"server_version", version},
                 {"server_major", major},
                 {"pg_basebackup_version", tool.version},
                 {"databases", databases}};
  const fs::path final_path = file.final_path();
  publish_backup(file, meta);
  spdlog::info("backup base: wrote {} ({}, WAL {} to {} on timeline {}, in {})", final_path.string(), human_bytes(meta.size),
               points.start_lsn, points.stop_lsn, points.timeline, human_duration(meta.duration_seconds));
  return {final_path, meta};
}

}  // namespace backupctl
