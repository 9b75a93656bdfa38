// Reading and checking every setting: one concern, in one read_* step per group of settings
// (paths, database, services, restore, objects, retention, remote, monitoring, rehearsal, WAL).
// Just over 500 lines because each setting carries its own one-line error and hint.
#include "config/config.hpp"

#include <algorithm>
#include <map>
#include <cctype>
#include <thread>

#include "util/env.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/words.hpp"

namespace backupctl {
namespace {

const char* kCompressionHint =
    "use gzip:0-9 (or a bare level 0-9), none, zstd or zstd:1-19; the default is gzip:1";

// MINIO_ENDPOINT: [http|https://]host[:port][/]. Credentials in it (user:secret@) would end up in
// messages, the state file and notifications: refused, and never echoed.
std::string checked_endpoint(const std::string& value, const std::string& name = "MINIO_ENDPOINT") {
  std::string rest = value;
  std::string scheme = "http";
  if (auto p = rest.find("://"); p != std::string::npos) {
    scheme = rest.substr(0, p);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char ch) { return std::tolower(ch); });
    rest = rest.substr(p + 3);
  }
  std::string authority = rest.substr(0, rest.find('/'));
  std::string path = rest.find('/') == std::string::npos ? "" : rest.substr(rest.find('/'));
  if (authority.find('@') != std::string::npos) {
    throw Error(ErrorCode::usage, "invalid " + name + ": it holds credentials (user:password@); not shown",
                "put the keys in the *_ACCESS_KEY and *_SECRET_KEY settings, and only http(s)://host:port in " + name);
  }
  if (scheme != "http" && scheme != "https") {
    throw Error(ErrorCode::usage, "invalid " + name + "='" + value + "': the scheme must be http or https",
                "e.g. " + name + "=http://minio:9000");
  }
  if (authority.empty() || authority.find_first_of(" \t?#") != std::string::npos) {
    throw Error(ErrorCode::usage, "invalid " + name + "='" + value + "': no host", "e.g. " + name + "=http://minio:9000");
  }
  if (!path.empty() && path != "/") {
    throw Error(ErrorCode::usage, "invalid " + name + "='" + value + "': it has a path (" + path + ")",
                "give only the server, e.g. http://minio:9000");
  }
  return scheme + "://" + authority;
}

// BACKUP_REMOTE_BWLIMIT: bytes per second, as rclone and curl write it: a number with an optional
// unit, K/M/G or KiB/MiB/GiB (powers of 1024) or KB/MB/GB (powers of 1000), B, and "/s" ("20M",
// "20MB", "512KiB/s"). A bare number is bytes per second. Under 1 KiB/s a push of one backup
// would take days: refused (a unit left out is the likely mistake).
std::uint64_t parse_rate(const std::string& value) {
  constexpr std::uint64_t kFloor = 1024;
  const std::string hint = "e.g. BACKUP_REMOTE_BWLIMIT=20M (20 MiB/s), 20MB (20 MB/s) or 512K; 0 or empty: no limit";
  std::string v = value;
  v.erase(std::remove_if(v.begin(), v.end(), [](unsigned char c) { return std::isspace(c); }), v.end());
  if (v.empty()) return 0;
  std::size_t digits = 0;
  while (digits < v.size() && std::isdigit(static_cast<unsigned char>(v[digits]))) ++digits;
  std::string unit = v.substr(digits);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.ends_with("/S")) unit.resize(unit.size() - 2);
  static const std::map<std::string, std::uint64_t> units = {
      {"", 1},          {"B", 1},
      {"K", 1ull << 10}, {"KIB", 1ull << 10}, {"KB", 1000},
      {"M", 1ull << 20}, {"MIB", 1ull << 20}, {"MB", 1000 * 1000},
      {"G", 1ull << 30}, {"GIB", 1ull << 30}, {"GB", 1000ull * 1000 * 1000}};
  auto u = units.find(unit);
  if (digits == 0 || digits > 12 || u == units.end()) {
    throw Error(ErrorCode::usage, "invalid BACKUP_REMOTE_BWLIMIT='" + value + "': not a rate", hint);
  }
  const std::uint64_t n = std::stoull(v.substr(0, digits));
  if (n > (std::uint64_t{1} << 40) / u->second) {
    throw Error(ErrorCode::usage, "invalid BACKUP_REMOTE_BWLIMIT='" + value + "': more than 1 TiB/s", hint);
  }
  const std::uint64_t rate = n * u->second;
  if (rate != 0 && rate < kFloor) {
    throw Error(ErrorCode::usage,
                "BACKUP_REMOTE_BWLIMIT='" + value + "' is " + std::to_string(rate) +
                    " bytes/s: a push would take days (at least 1K)",
                "a unit may be missing: " + hint);
  }
  return rate;
}

// BACKUP_REMOTE_URL and the settings that go with it.
RemoteConfig parse_remote(const std::string& url, int retention_days) {
  RemoteConfig r;
  r.url = url;
  const std::string hint = "e.g. BACKUP_REMOTE_URL=s3://offsite-backups/archive or file:///mnt/offsite/archive";
  // Credentials written into the URL (s3://KEY:SECRET@bucket/…; a secret may hold '/') would be
  // echoed in every message, --json output and the metas' copy records: "user:…@" anywhere is
  // refused, and nothing of the URL is repeated.
  if (auto scheme = url.find("://"); scheme != std::string::npos) {
    const auto at = url.find('@', scheme + 3);
    if (at != std::string::npos && url.substr(scheme + 3, at - scheme - 3).find(':') != std::string::npos) {
      throw Error(ErrorCode::usage,
                  "BACKUP_REMOTE_URL holds credentials (" + url.substr(0, scheme + 3) + "***@…): they are not taken from a URL",
                  "put them in BACKUP_REMOTE_ACCESS_KEY and BACKUP_REMOTE_SECRET_KEY, and give the URL without them");
    }
  }
  if (url.rfind("s3://", 0) == 0) {
    r.type = RemoteConfig::Type::s3;
    std::string rest = url.substr(5);
    r.bucket = rest.substr(0, rest.find('/'));
    r.prefix = rest.find('/') == std::string::npos ? "" : rest.substr(rest.find('/') + 1);
    while (!r.prefix.empty() && r.prefix.back() == '/') r.prefix.pop_back();
    if (!r.prefix.empty()) r.prefix += "/";
    bool bad_bucket = r.bucket.size() < 3 || r.bucket.size() > 63 ||
                      r.bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos;
    if (bad_bucket || r.bucket.find('@') != std::string::npos) {
      // Not echoed: what stands there may be a mistyped key.
      throw Error(ErrorCode::usage, "invalid BACKUP_REMOTE_URL: after s3:// comes no S3 bucket name (3-63 of a-z 0-9 . -)", hint);
    }
    for (const auto& seg : fs::path(r.prefix)) {
      if (seg == "." || seg == "..") {
        throw Error(ErrorCode::usage, "invalid BACKUP_REMOTE_URL: its prefix has a . or .. segment", hint);
      }
    }
    // One spelling (no trailing '/'): the copies' records in the metas are keyed by it.
    r.url = "s3://" + r.bucket + (r.prefix.empty() ? "" : "/" + r.prefix.substr(0, r.prefix.size() - 1));
  } else if (url.rfind("file://", 0) == 0) {
    r.type = RemoteConfig::Type::folder;
    r.dir = url.substr(7);
    if (!r.dir.is_absolute()) {
      throw Error(ErrorCode::usage, "invalid BACKUP_REMOTE_URL: a folder remote needs an absolute path after file://",
                  "file:// then the path: file:///mnt/offsite/archive");
    }
    r.dir = r.dir.lexically_normal();
    while (r.dir.string().size() > 1 && r.dir.string().back() == '/') r.dir = r.dir.string().substr(0, r.dir.string().size() - 1);
    // One spelling: the copies' records in the metas are keyed by it.
    r.url = "file://" + r.dir.string();
  } else {
    throw Error(ErrorCode::usage, "invalid BACKUP_REMOTE_URL: it must start with s3:// or file://", hint);
  }
  if (auto v = env_value("BACKUP_REMOTE_ENDPOINT")) r.endpoint = checked_endpoint(*v, "BACKUP_REMOTE_ENDPOINT");
  r.access_key = env_value("BACKUP_REMOTE_ACCESS_KEY").value_or("");
  r.secret_key = env_value("BACKUP_REMOTE_SECRET_KEY").value_or("");
  r.region = env_value("BACKUP_REMOTE_REGION").value_or("us-east-1");
  r.ca_file = env_value("BACKUP_REMOTE_CA_FILE").value_or("");
  r.storage_class = env_value("BACKUP_REMOTE_STORAGE_CLASS").value_or("");
  if (r.storage_class.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != std::string::npos) {
    throw Error(ErrorCode::usage, "invalid BACKUP_REMOTE_STORAGE_CLASS='" + r.storage_class + "'",
                "an S3 storage class: STANDARD, STANDARD_IA, GLACIER_IR, ...");
  }
  if (r.endpoint.empty() && r.type == RemoteConfig::Type::s3) r.endpoint = "https://s3." + r.region + ".amazonaws.com";
  r.retention_days = retention_days;
  if (auto v = env_value("BACKUP_REMOTE_RETENTION_DAYS")) {
    r.retention_days = static_cast<int>(parse_int_setting("BACKUP_REMOTE_RETENTION_DAYS", *v, 1, 100000));
  }
  if (auto v = env_value("BACKUP_REMOTE_BWLIMIT")) r.bwlimit = parse_rate(*v);
  if (auto v = env_value("BACKUP_REMOTE_OBJECT_LOCK_DAYS")) {
    r.object_lock_days = static_cast<int>(parse_int_setting("BACKUP_REMOTE_OBJECT_LOCK_DAYS", *v, 0, 36500));
    if (r.object_lock_days > 0 && r.type != RemoteConfig::Type::s3) {
      throw Error(ErrorCode::usage, "BACKUP_REMOTE_OBJECT_LOCK_DAYS needs an S3 remote",
                  "a folder cannot refuse deletes: use an S3 bucket with Object Lock, or make the folder's host "
                  "keep snapshots");
    }
  }
  if (auto v = env_value("BACKUP_REMOTE_ALLOW_PLAINTEXT")) r.allow_plaintext = parse_bool_setting("BACKUP_REMOTE_ALLOW_PLAINTEXT", *v);
  return r;
}

}  // namespace

DbCompression DbCompression::parse(std::string_view raw) {
  std::string value(raw);
  std::transform(value.begin(), value.end(), value.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  auto bad = [&] {
    return Error(ErrorCode::usage, "invalid BACKUP_DB_COMPRESSION='" + std::string(raw) + "'",
                 kCompressionHint);
  };
  DbCompression c;
  std::string method = value;
  std::string level;
  if (auto colon = value.find(':'); colon != std::string::npos) {
    method = value.substr(0, colon);
    level = value.substr(colon + 1);
    if (level.empty()) throw bad();
  }
  auto parse_level = [&](int min, int max) {
    if (level.empty() || level.size() > 2 ||
        !std::all_of(level.begin(), level.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      throw bad();
    }
    int v = std::stoi(level);
    if (v < min || v > max) throw bad();
    return v;
  };
  if (!method.empty() && std::all_of(method.begin(), method.end(),
                                     [](char ch) { return ch >= '0' && ch <= '9'; })) {
    if (!level.empty()) throw bad();
    level = method;
    c.method = Method::gzip;
    c.level = parse_level(0, 9);
  } else if (method == "gzip") {
    c.method = Method::gzip;
    c.level = level.empty() ? 1 : parse_level(0, 9);
  } else if (method == "none") {
    if (!level.empty()) throw bad();
    c.method = Method::gzip;
    c.level = 0;
  } else if (method == "zstd") {
    c.method = Method::zstd;
    c.level = level.empty() ? 3 : parse_level(1, 19);
  } else {
    throw bad();
  }
  return c;
}

std::string DbCompression::str() const {
  return (method == Method::zstd ? "zstd:" : "gzip:") + std::to_string(level);
}

std::string DbCompression::file_suffix() const {
  return method == Method::zstd ? ".dump.zst" : ".dump";
}

// The settings by concern, in the order they depend on each other (APP_ROOT first; the
// retention before the remote, whose own retention defaults to it).
namespace {

unsigned cores() { return std::max(1u, std::thread::hardware_concurrency()); }

// APP_ROOT, BACKUP_DIR, BACKUP_PROFILE.
void read_paths(Config& c) {
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  c.app_root = env_value("APP_ROOT").value_or(cwd.string());
  if (c.app_root.is_relative()) c.app_root = cwd / c.app_root;
  c.backup_dir = env_value("BACKUP_DIR").value_or((c.app_root / "infra/data/backup").string());
  if (c.backup_dir.is_relative()) c.backup_dir = cwd / c.backup_dir;
  c.backup_dir = c.backup_dir.lexically_normal();
  if (c.backup_dir.filename().empty()) c.backup_dir = c.backup_dir.parent_path();
  c.profile = env_value("BACKUP_PROFILE").value_or("default");
}

// The database backup and the PostgreSQL tools.
void read_database(Config& c) {
  if (auto v = env_value("BACKUP_DB_COMPRESSION")) c.db_compression = DbCompression::parse(*v);
  c.zstd_threads = static_cast<int>(cores());
  if (auto v = env_value("BACKUP_ZSTD_THREADS")) {
    c.zstd_threads = static_cast<int>(parse_int_setting("BACKUP_ZSTD_THREADS", *v, 1, 256));
  }
  if (auto v = env_value("PG_BINDIR")) c.pg_bindir = fs::path(*v);
  if (auto v = env_value("PG_TOOLS")) {
    if (*v == "host") {
      c.pg_tools = PgTools::host;
    } else if (*v == "compose") {
      c.pg_tools = PgTools::compose;
    } else if (*v == "auto") {
      c.pg_tools = PgTools::automatic;
    } else {
      throw Error(ErrorCode::usage, "invalid PG_TOOLS='" + *v + "'",
                  "use host (this machine's pg_dump...), compose (inside the postgres service) or auto");
    }
  }
  if (auto v = env_value("PG_SERVICE")) c.pg_service = *v;
  if (auto v = env_value("PGPORT")) parse_int_setting("PGPORT", *v, 1, 65535);

}

// Stopping and starting the app around a restore.
void read_services(Config& c) {
  if (auto v = env_value("SERVICE_CONTROL")) {
    std::string s = *v;
    if (s == "compose") {
      c.service_control = ServiceControl::compose;
    } else if (s == "systemd") {
      c.service_control = ServiceControl::systemd;
    } else if (s == "command") {
      c.service_control = ServiceControl::command;
    } else if (s == "none") {
      c.service_control = ServiceControl::none;
    } else {
      throw Error(ErrorCode::usage, "invalid SERVICE_CONTROL='" + s + "'",
                  "use compose, systemd, command or none");
    }
  }
  c.compose_file = env_value("COMPOSE_FILE").value_or((c.app_root / "infra/docker-compose.yml").string());
  if (c.compose_file.is_relative()) c.compose_file = c.app_root / c.compose_file;
  c.app_services = split_words(env_value("APP_SERVICES").value_or("api worker beat"), "APP_SERVICES");
  if (auto v = env_value("COMPOSE_COMMAND")) c.compose_command = split_words(*v, "COMPOSE_COMMAND");
  // As compose itself: the environment first, then the stack's env file (read, never loaded).
  if (auto v = env_value("COMPOSE_PROJECT_NAME")) {
    c.compose_project = *v;
  } else {
    std::error_code ec;
    fs::path stack_env = c.app_root / "infra/env";
    if (fs::is_regular_file(stack_env, ec)) {
      try {
        for (const auto& [k, val] : parse_env_file(read_file(stack_env), stack_env.string())) {
          if (k == "COMPOSE_PROJECT_NAME") c.compose_project = val;
        }
      } catch (const Error&) {
        // A malformed stack env file is the stack's problem, reported where it is loaded.
      }
    }
  }
  if (!c.compose_project.empty() &&
      c.compose_project.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") != std::string::npos) {
    throw Error(ErrorCode::usage, "invalid COMPOSE_PROJECT_NAME='" + c.compose_project + "'",
                "compose project names are lowercase letters, digits, '_' and '-'");
  }
  if (c.service_control == ServiceControl::command) {
    auto stop = env_value("SERVICE_STOP_CMD");
    auto start = env_value("SERVICE_START_CMD");
    if (!stop || !start) {
      throw Error(ErrorCode::usage,
                  "SERVICE_CONTROL=command needs SERVICE_STOP_CMD and SERVICE_START_CMD",
                  "e.g. SERVICE_STOP_CMD='systemctl stop archive.target'");
    }
    c.service_stop_cmd = split_words(*stop, "SERVICE_STOP_CMD");
    c.service_start_cmd = split_words(*start, "SERVICE_START_CMD");
  }
}

// Restores: kept previous copies, jobs, CONFIRM.
void read_restore(Config& c) {
  if (auto v = env_value("RESTORE_KEEP_PREVIOUS_DAYS")) {
    c.restore_keep_previous_days =
        static_cast<int>(parse_int_setting("RESTORE_KEEP_PREVIOUS_DAYS", *v, 0, 36500));
  }
  c.restore_jobs = static_cast<int>(cores());
  if (auto v = env_value("RESTORE_JOBS")) {
    c.restore_jobs = static_cast<int>(parse_int_setting("RESTORE_JOBS", *v, 1, 256));
  }
  if (auto v = env_value("CONFIRM")) c.confirmed = *v == "YES";

}

// The attachments store and their backup.
void read_objects(Config& c) {
  if (auto v = env_value("OBJECT_STORAGE")) {
    if (*v == "minio" || *v == "s3") {
      c.object_storage = ObjectStorage::minio;
    } else if (*v == "disk") {
      c.object_storage = ObjectStorage::disk;
    } else {
      throw Error(ErrorCode::usage, "invalid OBJECT_STORAGE='" + *v + "'", "use minio (any S3 API) or disk");
    }
  }
  if (auto v = env_value("MINIO_ENDPOINT")) c.minio_endpoint = checked_endpoint(*v);
  c.minio_access_key = env_value("MINIO_ACCESS_KEY").value_or("");
  c.minio_secret_key = env_value("MINIO_SECRET_KEY").value_or("");
  c.minio_region = env_value("MINIO_REGION").value_or("us-east-1");
  c.minio_ca_file = env_value("MINIO_CA_FILE").value_or("");
  if (auto v = env_value("MINIO_BUCKETS")) {
    std::string list = *v;
    std::replace(list.begin(), list.end(), ',', ' ');
    for (auto& b : split_words(list, "MINIO_BUCKETS")) c.minio_buckets.push_back(b);
  }
  if (auto v = env_value("OBJECT_STORAGE_DIR")) {
    c.object_storage_dir = *v;
    if (c.object_storage_dir.is_relative()) c.object_storage_dir = c.app_root / c.object_storage_dir;
  }
  if (auto v = env_value("OBJECT_PARALLEL")) {
    c.object_parallel = static_cast<int>(parse_int_setting("OBJECT_PARALLEL", *v, 1, 64));
  }
  if (auto v = env_value("BACKUP_OBJECTS_COMPRESSION")) {
    if (*v == "zstd") {
      c.objects_zstd = true;
    } else if (*v != "gzip") {
      throw Error(ErrorCode::usage, "invalid BACKUP_OBJECTS_COMPRESSION='" + *v + "'", "use gzip (.tar.gz) or zstd (.tar.zst)");
    }
  }
}

// The config files backed up (relative to APP_ROOT, never outside it).
void read_config_paths(Config& c) {
  c.config_paths = split_words(env_value("CONFIG_PATHS").value_or("infra/env infra/docker-compose.yml infra/monitoring"),
                               "CONFIG_PATHS");
  for (const auto& p : c.config_paths) {
    fs::path path(p);
    bool escapes = path.is_absolute();
    for (const auto& part : path) escapes = escapes || part == "..";
    if (escapes) {
      throw Error(ErrorCode::usage, "invalid CONFIG_PATHS entry '" + p + "'",
                  "config paths are relative to APP_ROOT and stay inside it");
    }
  }
}

// Retention.
void read_retention(Config& c) {
  if (auto v = env_value("BACKUP_RETENTION_DAYS")) {
    c.retention_days = static_cast<int>(parse_int_setting("BACKUP_RETENTION_DAYS", *v, 1, 36500));
  }
  auto count = [&](const char* name, int& field, int min) {
    if (auto v = env_value(name)) field = static_cast<int>(parse_int_setting(name, *v, min, 100000));
  };
  count("BACKUP_KEEP_MIN", c.keep_min, 1);
  count("BACKUP_KEEP_DAILY", c.keep_daily, 0);
  count("BACKUP_KEEP_WEEKLY", c.keep_weekly, 0);
  count("BACKUP_KEEP_MONTHLY", c.keep_monthly, 0);
  count("BACKUP_MAX_AGE_HOURS", c.max_age_hours, 1);
}

// Encryption and the off-site copy.
void read_encryption_and_remote(Config& c) {
  if (auto v = env_value("BACKUP_AGE_RECIPIENTS")) {
    std::string list = *v;
    std::replace(list.begin(), list.end(), ',', ' ');
    c.age_recipients = split_words(list, "BACKUP_AGE_RECIPIENTS");
    for (const auto& r : c.age_recipients) {
      if (r.rfind("age1", 0) != 0 && r.rfind("ssh-", 0) != 0) {
        throw Error(ErrorCode::usage, "invalid BACKUP_AGE_RECIPIENTS entry '" + r + "'",
                    "give age public keys (age1...; `age-keygen -y key.txt` prints yours) or ssh public keys");
      }
    }
  }
  if (auto v = env_value("BACKUP_AGE_IDENTITY")) c.age_identity = *v;
  if (auto v = env_value("BACKUP_REMOTE_URL"); v && !v->empty()) c.remote = parse_remote(*v, c.retention_days);
}

// Pings, metrics, notifications, the checklist and the api.
void read_monitoring(Config& c) {
  c.ping_url = env_value("BACKUP_PING_URL").value_or("");
  while (!c.ping_url.empty() && c.ping_url.back() == '/') c.ping_url.pop_back();
  if (auto v = env_value("BACKUP_METRICS_FILE")) c.metrics_file = *v;
  c.notify_url = env_value("BACKUP_NOTIFY_URL").value_or("");
  if (auto v = env_value("BACKUP_NOTIFY_ON_SUCCESS")) c.notify_on_success = parse_bool_setting("BACKUP_NOTIFY_ON_SUCCESS", *v);
  c.checks_file = env_value("CHECKS_FILE").value_or((c.app_root / "infra/backup-checks.toml").string());
  if (c.checks_file.is_relative()) c.checks_file = c.app_root / c.checks_file;
  c.api_url = env_value("API_URL").value_or("http://127.0.0.1:8000");
  while (!c.api_url.empty() && c.api_url.back() == '/') c.api_url.pop_back();
}

// Continuous protection: the WAL receiver, base backups, the point-in-time restore's scratch.
void read_wal(Config& c) {
  if (auto v = env_value("BACKUP_WAL")) {
    if (*v == "stream") {
      c.wal_stream = true;
    } else if (*v != "off") {
      throw Error(ErrorCode::usage, "BACKUP_WAL=" + *v + " is not a WAL mode", "use stream (continuous protection) or off");
    }
  }
  if (auto v = env_value("WAL_SLOT")) {
    const bool ok = !v->empty() && v->size() <= 63 && std::all_of(v->begin(), v->end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
    });
    if (!ok) throw Error(ErrorCode::usage, "WAL_SLOT=" + *v + " is not a slot name", "use lower-case letters, digits and _ (at most 63)");
    c.wal_slot = *v;
  }
  if (auto v = env_value("WAL_PUSH_INTERVAL")) c.wal_push_interval = static_cast<int>(parse_int_setting("WAL_PUSH_INTERVAL", *v, 1, 86400));
  if (auto v = env_value("BACKUP_BASE_EVERY_HOURS")) {
    c.base_every_hours = static_cast<int>(parse_int_setting("BACKUP_BASE_EVERY_HOURS", *v, 1, 24 * 366));
  }
  if (auto v = env_value("WAL_ALLOW_UNBOUNDED_SLOT")) c.wal_allow_unbounded_slot = parse_bool_setting("WAL_ALLOW_UNBOUNDED_SLOT", *v);
  if (auto v = env_value("WAL_SYNCHRONOUS")) c.wal_synchronous = parse_bool_setting("WAL_SYNCHRONOUS", *v);
  c.pitr_work_dir = env_value("PITR_WORK_DIR").value_or((c.backup_dir / ".pitr").string());
  if (c.pitr_work_dir.is_relative()) c.pitr_work_dir = c.app_root / c.pitr_work_dir;
  c.pitr_work_dir = c.pitr_work_dir.lexically_normal();
  while (c.pitr_work_dir.has_filename() == false && c.pitr_work_dir != c.pitr_work_dir.root_path()) {
    c.pitr_work_dir = c.pitr_work_dir.parent_path();
  }
}

// The rehearsal's staging places and app.
void read_rehearsal(Config& c) {
  c.staging_database_url = env_value("STAGING_DATABASE_URL").value_or("");
  c.staging_api_url = env_value("STAGING_API_URL").value_or("");
  c.staging_bucket = env_value("STAGING_BUCKET").value_or("backupctl-rehearsal");
  {
    auto start = env_value("STAGING_APP_START_CMD");
    auto stop = env_value("STAGING_APP_STOP_CMD");
    if (start.has_value() != stop.has_value()) {
      throw Error(ErrorCode::usage, "STAGING_APP_START_CMD and STAGING_APP_STOP_CMD go together",
                  "set both (the rehearsal starts the staging app with one and stops it with the other) or neither");
    }
    if (start) {
      c.staging_app_start_cmd = split_words(*start, "STAGING_APP_START_CMD");
      c.staging_app_stop_cmd = split_words(*stop, "STAGING_APP_STOP_CMD");
      if (c.staging_api_url.empty()) {
        throw Error(ErrorCode::usage, "STAGING_APP_START_CMD is set but STAGING_API_URL is not",
                    "set STAGING_API_URL to where the staging app answers, e.g. http://127.0.0.1:8001");
      }
    }
  }
}

}  // namespace

Config Config::from_environment() {
  Config c;
  read_paths(c);
  read_database(c);
  read_services(c);
  read_restore(c);
  read_objects(c);
  read_config_paths(c);
  read_retention(c);
  read_encryption_and_remote(c);
  read_monitoring(c);
  read_rehearsal(c);
  read_wal(c);
  return c;
}

}  // namespace backupctl
