// Settings from the environment (and --env-file), validated once at start-up. Names follow the
// operator contract; README.md (Settings) lists every variable.
#pragma once

#include <filesystem>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace backupctl {

namespace fs = std::filesystem;

// BACKUP_DB_COMPRESSION: how the database dump is compressed.
//   gzip:N / N (0-9)  pg_dump's own compression, written as a stock custom-format `.dump`
//   none              gzip:0
//   zstd / zstd:N     pg_dump uncompressed, compressed by backupctl with multithreaded zstd into
//                     `.dump.zst` (restore with `zstd -dc F | pg_restore ...`)
struct DbCompression {
  enum class Method { gzip, zstd };
  Method method = Method::gzip;
  int level = 1;  // the default: ~3x faster than pg_dump's default (6) for ~2.5% more bytes

  // Throws Error(usage) with a hint listing the accepted forms.
  static DbCompression parse(std::string_view value);
  std::string str() const;          // "gzip:1", "zstd:3"
  std::string file_suffix() const;  // ".dump" or ".dump.zst"
};

// SERVICE_CONTROL: how a restore stops and starts the app's services (api, worker, beat).
enum class ServiceControl { compose, systemd, command, none };
// Where pg_dump, pg_dumpall, pg_restore and psql run: on this host, inside the stack's postgres
// service (compose exec -T), or the host's when new enough, else the service's.
enum class PgTools { host, compose, automatic };

// OBJECT_STORAGE: where attachments live.
enum class ObjectStorage { minio, disk };

// BACKUP_REMOTE_*: the off-site copy of BACKUP_DIR. An S3 bucket and prefix (any S3 API), or a
// folder (a mount from another machine). The layout there is BACKUP_DIR's: <kind>/<file>,
// <kind>/<file>.meta, sets/set_<ts>.json.
struct RemoteConfig {
  enum class Type { s3, folder };
  Type type = Type::s3;
  std::string url;            // BACKUP_REMOTE_URL as given (holds no secret: refused otherwise)
  std::string bucket;         // s3
  std::string prefix;         // s3: "" or "a/b/" (with the slash)
  fs::path dir;               // folder
  std::string endpoint;       // BACKUP_REMOTE_ENDPOINT (default https://s3.<region>.amazonaws.com)
  std::string access_key;     // BACKUP_REMOTE_ACCESS_KEY
  std::string secret_key;     // BACKUP_REMOTE_SECRET_KEY (secret)
  std::string region = "us-east-1";  // BACKUP_REMOTE_REGION
  std::string ca_file;        // BACKUP_REMOTE_CA_FILE
  std::string storage_class;  // BACKUP_REMOTE_STORAGE_CLASS (S3: STANDARD_IA, GLACIER_IR, ...)
  int retention_days = 30;    // BACKUP_REMOTE_RETENTION_DAYS (default BACKUP_RETENTION_DAYS)
  std::uint64_t bwlimit = 0;  // BACKUP_REMOTE_BWLIMIT, bytes/s (0: none)
  int object_lock_days = 0;   // BACKUP_REMOTE_OBJECT_LOCK_DAYS (S3 Object Lock, COMPLIANCE)
  bool allow_plaintext = false;  // BACKUP_REMOTE_ALLOW_PLAINTEXT=yes

  // "s3://bucket/prefix" or "file:///path": for messages and the copies' records.
  std::string describe() const { return url; }
};

struct Config {
  fs::path app_root;    // APP_ROOT, default: the current directory
  fs::path backup_dir;  // BACKUP_DIR, default: $APP_ROOT/infra/data/backup
  std::string profile;  // BACKUP_PROFILE, default "default"
  int retention_days = 30;  // BACKUP_RETENTION_DAYS
  DbCompression db_compression;  // BACKUP_DB_COMPRESSION
  int zstd_threads = 0;          // BACKUP_ZSTD_THREADS, default: the number of cores
  std::optional<fs::path> pg_bindir;  // PG_BINDIR: where pg_dump/pg_restore/psql are taken from
  PgTools pg_tools = PgTools::automatic;  // PG_TOOLS=host|compose|auto
  std::string pg_service = "postgres";    // PG_SERVICE: the compose service PG_TOOLS=compose runs them in

  // Restores.
  ServiceControl service_control = ServiceControl::compose;  // SERVICE_CONTROL
  fs::path compose_file;                  // COMPOSE_FILE, default $APP_ROOT/infra/docker-compose.yml
  std::vector<std::string> compose_command;  // COMPOSE_COMMAND (argv); empty: found (`docker compose`, `docker-compose`)
  std::string compose_project;            // COMPOSE_PROJECT_NAME (environment, else $APP_ROOT/infra/env)
  std::vector<std::string> app_services;  // APP_SERVICES, default "api worker beat"
  std::vector<std::string> service_stop_cmd;   // SERVICE_STOP_CMD (argv), for `command`
  std::vector<std::string> service_start_cmd;  // SERVICE_START_CMD (argv), for `command`
  int restore_keep_previous_days = 7;     // RESTORE_KEEP_PREVIOUS_DAYS
  int restore_jobs = 0;                   // RESTORE_JOBS: pg_restore -j, default: the cores
  bool confirmed = false;                 // CONFIRM=YES

  // Attachments.
  ObjectStorage object_storage = ObjectStorage::minio;  // OBJECT_STORAGE
  std::string minio_endpoint;                 // MINIO_ENDPOINT
  std::string minio_access_key;               // MINIO_ACCESS_KEY
  std::string minio_secret_key;               // MINIO_SECRET_KEY (secret)
  std::string minio_region = "us-east-1";     // MINIO_REGION
  std::string minio_ca_file;                  // MINIO_CA_FILE: a private CA for TLS
  std::vector<std::string> minio_buckets;     // MINIO_BUCKETS (empty: all)
  fs::path object_storage_dir;                // OBJECT_STORAGE_DIR (disk fallback)
  int object_parallel = 8;                    // OBJECT_PARALLEL: concurrent transfers
  bool objects_zstd = false;                  // BACKUP_OBJECTS_COMPRESSION=zstd -> .tar.zst

  // Config files.
  std::vector<std::string> config_paths;      // CONFIG_PATHS, relative to APP_ROOT

  // Retention.
  int keep_min = 3;                           // BACKUP_KEEP_MIN
  int keep_daily = 0;                         // BACKUP_KEEP_DAILY
  int keep_weekly = 0;                        // BACKUP_KEEP_WEEKLY
  int keep_monthly = 0;                       // BACKUP_KEEP_MONTHLY

  // Encryption (age).
  std::vector<std::string> age_recipients;    // BACKUP_AGE_RECIPIENTS
  fs::path age_identity;                      // BACKUP_AGE_IDENTITY

  // Off-site copies.
  std::optional<RemoteConfig> remote;         // BACKUP_REMOTE_URL (and BACKUP_REMOTE_*)
  std::string ping_url;                       // BACKUP_PING_URL: URL/start, URL, URL/fail (may hold a token)

  // Monitoring.
  fs::path metrics_file;                      // BACKUP_METRICS_FILE
  std::string notify_url;                     // BACKUP_NOTIFY_URL (may hold a token: not printed)
  bool notify_on_success = false;             // BACKUP_NOTIFY_ON_SUCCESS
  int max_age_hours = 26;                     // BACKUP_MAX_AGE_HOURS

  // Checks and rehearsals.
  fs::path checks_file;                       // CHECKS_FILE, default $APP_ROOT/infra/backup-checks.toml
  std::string api_url;                        // API_URL, default http://127.0.0.1:8000
  std::string staging_database_url;           // STAGING_DATABASE_URL (default: <db>_rehearsal)
  std::string staging_api_url;                // STAGING_API_URL (http checks in rehearsals)
  std::string staging_bucket;                 // STAGING_BUCKET (S3 rehearsals), default backupctl-rehearsal
  // STAGING_APP_START_CMD / STAGING_APP_STOP_CMD (argv): a staging instance of the app, started
  // against the staging database and objects for the rehearsal's checks and stopped after them.
  std::vector<std::string> staging_app_start_cmd, staging_app_stop_cmd;

  // Continuous protection (point-in-time recovery).
  bool wal_stream = false;                    // BACKUP_WAL=stream|off
  std::string wal_slot = "backupctl";         // WAL_SLOT: the receiver's replication slot
  int wal_push_interval = 30;                 // WAL_PUSH_INTERVAL, seconds
  int base_every_hours = 24;                  // BACKUP_BASE_EVERY_HOURS
  bool wal_allow_unbounded_slot = false;      // WAL_ALLOW_UNBOUNDED_SLOT=yes
  bool wal_synchronous = false;               // WAL_SYNCHRONOUS=yes: commits wait for the receiver
  fs::path pitr_work_dir;                     // PITR_WORK_DIR, default $BACKUP_DIR/.pitr

  // Reads and validates the environment; throws Error(usage) naming the bad variable.
  static Config from_environment();

  fs::path kind_dir(std::string_view kind) const { return backup_dir / std::string(kind); }
};

}  // namespace backupctl
