#include "command/backup_db.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>

#include "catalog/catalog.hpp"
#include "catalog/naming.hpp"
#include "io/atomic_file.hpp"
#include "io/pipeline.hpp"
#include "io/age.hpp"
#include "io/zstd.hpp"
#include "pg/connection.hpp"
#include "pg/tools.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"
#include "util/time.hpp"

namespace backupctl {
namespace {

struct ServerInfo {
  std::string database, where, host, port, user, version;
  int major = 0;
};

// Connects once before anything is written: a wrong password, a missing database or an
// unreachable server fails here with a clear message, and we learn the version pg_dump must match.
ServerInfo probe_server(const PgTarget& target) {
  PgConnection conn = PgConnection::open(target);
  ServerInfo info;
  info.database = conn.dbname();
  info.where = conn.describe();
  info.host = PQhost(conn.get()) ? PQhost(conn.get()) : "";
  info.port = PQport(conn.get());
  info.user = PQuser(conn.get());
  info.version = conn.server_version();
  info.major = conn.server_major();
  return info;
}

}  // namespace

BackupResult backup_db(const Config& config, const PgTarget& target, Progress& progress,
                       const BackupDbOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const ServerInfo server = probe_server(target);
  const PgTool pg_dump = find_pg_tool("pg_dump", server.major, config);
  const PgTool pg_dumpall = find_pg_tool("pg_dumpall", server.major, config);
  const std::string& database = server.database;

  const fs::path dir = config.kind_dir("db");
  make_dirs(dir, 0700);
  const bool zstd = config.db_compression.method == DbCompression::Method::zstd;
  // The dump and its roles file are reserved together: a .dump and a .dump.zst made in the same
  // second would otherwise share one roles file name.
  const std::string age = config.age_recipients.empty() ? "" : ".age";
  ReservedFiles files = reserve_backup_files(dir, [&](std::string_view ts) {
    std::string dump_name = db_backup_filename(database, ts, config.db_compression.file_suffix() + age);
    return std::vector<std::string>{dump_name, roles_filename(dump_name) + age};
  });
  io::AtomicFileSink& dump = files.sinks[0];
  io::AtomicFileSink& roles_sink = files.sinks[1];
  const std::string set_id = options.set_id.empty() ? new_set_id(files.time) : options.set_id;
  spdlog::info("backup db: dumping {} with {} (compression {}) into {}", server.where, pg_dump.describe(),
               config.db_compression.str(), dump.partial_path().string());

  // The cluster's roles, so a restore onto a fresh server can recreate the owners. Written first:
  // if the dump fails, both are removed; if we crash in between, an orphan .roles.sql is not a
  // backup and prune removes it.
  NoProgress quiet;
  StreamResult roles = stream_pg_program(
      pg_dumpall.name(), {.argv = pg_dumpall.argv({"--roles-only", "--no-role-passwords", "--no-password", "--database=" + database}),
       .env = target.child_env()},
      roles_sink, nullptr, 0, config.age_recipients, quiet, "no roles file was kept");
  warn_lines(roles.stderr_text);

  int level = zstd ? 0 : config.db_compression.level;
  progress.start("pg_dump " + database);
  StreamResult data = stream_pg_program(
      pg_dump.name(), {.argv = pg_dump.argv({"--format=custom", "--compress=" + std::to_string(level), "--no-password"}),
       .env = target.child_env()},
      dump, zstd ? &config.db_compression : nullptr, config.zstd_threads, config.age_recipients,
      progress, "the incomplete dump was removed");
  warn_lines(data.stderr_text);
  progress.finish();
  if (data.size == 0) {
    throw Error(ErrorCode::tool_failed, "pg_dump produced no output",
                "the incomplete dump was removed; check the server log");
  }

  roles_sink.commit();

  Meta meta = new_backup_meta("db", dump.final_path(), data.size, data.sha256, config.profile, files.time,
                              seconds_since(t0), set_id, config.age_recipients);
  meta.format = "pg_custom";
  meta.compression = config.db_compression.str();
  meta.source = {{"database", database},
                 {"host", server.host},
                 {"port", server.port},
                 {"user", server.user},
                 {"server_version", server.version},
                 {"pg_dump_version", pg_dump.version}};
  meta.parts["roles"] = {{"file", roles_sink.final_path().filename().string()}, {"size", roles.size}, {"sha256", roles.sha256}};
  const fs::path final_path = dump.final_path();
  publish_backup(dump, meta);
  spdlog::info("backup db: wrote {} ({}, {} in {})", final_path.string(), human_bytes(meta.size),
               meta.compression, human_duration(meta.duration_seconds));
  return {final_path, meta};
}

}  // namespace backupctl
