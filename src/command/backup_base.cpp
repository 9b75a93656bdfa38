#include "command/backup_base.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <regex>

#include "catalog/catalog.hpp"
#include "catalog/naming.hpp"
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

  Meta meta = new_backup_meta("base", file.final_path(), out.size, out.sha256, config.profile, files.time, seconds_since(t0),
                              new_set_id(files.time), config.age_recipients);
  meta.format = "pg_basebackup_tar";
  meta.compression = zstd.str();
  meta.source = {{"system_identifier", std::to_string(id.system_identifier)},
                 {"timeline", points.timeline},
                 {"start_lsn", points.start_lsn},
                 {"stop_lsn", points.stop_lsn},
                 {"wal_segment_size", segment_size},
                 {"server", conn.describe()},
                 {"server_version", version},
                 {"server_major", major},
                 {"pg_basebackup_version", tool.version}};
  const fs::path final_path = file.final_path();
  publish_backup(file, meta);
  spdlog::info("backup base: wrote {} ({}, WAL {} to {} on timeline {}, in {})", final_path.string(), human_bytes(meta.size),
               points.start_lsn, points.stop_lsn, points.timeline, human_duration(meta.duration_seconds));
  return {final_path, meta};
}

}  // namespace backupctl
