#include "stack_host.hpp"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

#include "util/fs.hpp"
#include "util/process.hpp"

namespace backupctl::test {

nlohmann::json json_of(const CliResult& r) {
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out << r.err;
  return j;
}

void flip_byte(const fs::path& file, std::uint64_t at) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(at));
  f.put(static_cast<char>(c ^ 0x20));
}

std::map<std::string, std::string> bucket_files(const S3Server& s3, const std::string& bucket, const std::string& prefix) {
  S3Store store(s3.settings());
  std::map<std::string, std::string> out;
  std::vector<std::string> keys;
  store.list_objects(bucket, prefix, [&](const ObjectEntry& e) { keys.push_back(e.key); });
  for (const auto& k : keys) {
    io::StringSink sink;
    store.get_object(bucket, k, sink);
    out[k.substr(prefix.size())] = sink.take();
  }
  return out;
}

std::string tree_digest(const fs::path& root) {
  std::string out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    out += fs::relative(it->path(), root).string();
    if (it->is_regular_file()) out += " " + sha256sum(it->path());
    out += "\n";
  }
  return out;
}

void write_random(const fs::path& file, std::size_t size, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string data(size, '\0');
  for (std::size_t i = 0; i + 8 <= size; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(data.data() + i, &v, 8);
  }
  write_file_atomic(file, data, 0644);
}

Host::Host(std::size_t big_attachment) {
  pg.create_database("archive");
  pg.psql("archive",
          "CREATE TABLE documents (id int PRIMARY KEY, title text); "
          "INSERT INTO documents SELECT i, 'doc ' || i FROM generate_series(1, 5000) i; "
          "CREATE TABLE attachments (bucket text, object_key text); "
          "INSERT INTO attachments VALUES ('attachments', '2026/scan.pdf'), ('attachments', 'note3.txt')");
  make_dirs(app() / "infra/monitoring", 0755);
  write_file_atomic(app() / "infra/env", "POSTGRES_PASSWORD=offsite-secret\n", 0600);
  write_file_atomic(app() / "infra/docker-compose.yml", "services:\n  api: {}\n", 0644);
  write_file_atomic(app() / "infra/monitoring/prometheus.yml", "scrape_configs: []\n", 0644);
  make_dirs(objects() / "attachments/2026", 0755);
  write_random(objects() / "attachments/2026/scan.pdf", big_attachment, 7);
  for (int i = 0; i < 5; ++i) write_file_atomic(objects() / "attachments" / ("note" + std::to_string(i) + ".txt"), "note " + std::to_string(i));
  EXPECT_TRUE(run_command({.argv = {"age-keygen", "-o", key().string()}}).status.ok());
  recipient = first_line(run_command({.argv = {"age-keygen", "-y", key().string()}}).out);
}

EnvList Host::env(const EnvList& remote) const {
  EnvList e = backup_env(pg, "archive", backups());
  e.insert(e.end(), {{"APP_ROOT", app().string()},
                     {"OBJECT_STORAGE", "disk"},
                     {"OBJECT_STORAGE_DIR", objects().string()},
                     {"SERVICE_CONTROL", "none"},
                     {"BACKUP_AGE_RECIPIENTS", recipient},
                     {"BACKUP_AGE_IDENTITY", key().string()}});
  e.insert(e.end(), remote.begin(), remote.end());
  return e;
}

EnvList s3_remote(const S3Server& s3, const std::string& url) {
  return {{"BACKUP_REMOTE_URL", url},
          {"BACKUP_REMOTE_ENDPOINT", s3.endpoint()},
          {"BACKUP_REMOTE_ACCESS_KEY", s3.access_key()},
          {"BACKUP_REMOTE_SECRET_KEY", s3.secret_key()}};
}

// backupctl (and pg_dump, age: the children inherit it) under a clock `offset` off ("+30d"),
// through Debian's libfaketime.
EnvList faked_clock(EnvList env, const std::string& offset) {
  env.emplace_back("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
  env.emplace_back("FAKETIME", offset);
  // The sanitizer build's runtime must come first among the libraries, unless told otherwise.
  const char* asan = std::getenv("ASAN_OPTIONS");
  env.emplace_back("ASAN_OPTIONS", std::string(asan ? asan : "") + (asan && *asan ? ":" : "") + "verify_asan_link_order=0");
  return env;
}

// A fresh host's environment: its own cluster and BACKUP_DIR, the age key of `host`, `remote`.
EnvList fresh_host_env(const PgCluster& fresh, const TempDir& dir, const Host& host, const EnvList& remote) {
  EnvList e = backup_env(fresh, "archive", dir.path() / "backups");
  e.insert(e.end(), {{"APP_ROOT", (dir.path() / "app").string()},
                     {"OBJECT_STORAGE", "disk"},
                     {"OBJECT_STORAGE_DIR", (dir.path() / "objects").string()},
                     {"SERVICE_CONTROL", "none"},
                     {"BACKUP_AGE_IDENTITY", host.key().string()},
                     {"CONFIRM", "YES"}});
  e.insert(e.end(), remote.begin(), remote.end());
  return e;
}

EnvList with(EnvList env, const std::string& name, const std::string& value) {
  std::erase_if(env, [&](const auto& kv) { return kv.first == name; });
  env.emplace_back(name, value);
  return env;
}

}  // namespace backupctl::test
