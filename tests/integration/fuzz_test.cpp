// Fuzzing every reader of a file or key someone else could write: real backups (a dump, an objects
// archive, a config archive, their metas, a set file, a journal) made by backupctl itself,
// mutated thousands of times from a fixed seed (bit flips, bytes set, cuts, inserted and repeated
// runs, JSON values swapped for hostile ones), and fed through the readers in-process. Run under
// ASan/UBSan in `make test`. For every case: no crash, no exception other than a backupctl::Error
// with a message and the code the reader must refuse with (a damaged file is `verification`,
// exit 5, never `internal`), nothing written outside the places the case owns (a sentinel folder
// beside them must stay as it was), and where the file has its .meta, no changed byte accepted.
//   BACKUPCTL_FUZZ_CASES=N   cases per reader (default 2000)
//   BACKUPCTL_FUZZ_SEED=S    the seed (default 20261201); a failure names its seed and case
#include <fcntl.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "tar/tar.hpp"
#include "catalog/catalog.hpp"
#include "catalog/journal.hpp"
#include "catalog/meta.hpp"
#include "check/checklist.hpp"
#include "command/restore_config.hpp"
#include "command/list.hpp"
#include "command/prune.hpp"
#include "command/repair.hpp"
#include "command/restore_objects.hpp"
#include "command/sets.hpp"
#include "command/status.hpp"
#include "config/config.hpp"
#include "fixture.hpp"
#include "pg/dump_parser.hpp"
#include "storage/disk/disk_store.hpp"
#include "util/env.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/progress.hpp"

namespace backupctl::test {

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

class Mutator {
 public:
  explicit Mutator(std::uint32_t seed) : m_rng(seed) {}

  std::string bytes(std::string s) {
    int edits = 1 + pick(4);
    for (int i = 0; i < edits && !s.empty(); ++i) {
      std::size_t at = pick(s.size());
      switch (pick(6)) {
        case 0: s[at] = static_cast<char>(s[at] ^ (1 << pick(8))); break;
        case 1: s[at] = static_cast<char>(pick(256)); break;
        case 2: s.resize(at); break;
        case 3: s.insert(at, std::string(1 + pick(64), static_cast<char>(pick(256)))); break;
        case 4: {
          std::size_t n = std::min<std::size_t>(1 + pick(512), s.size() - at);
          s.insert(at, s.substr(at, n));
          break;
        }
        case 5:  // a length-like field: four bytes of 0xff or 0x7f...
          for (std::size_t k = at; k < std::min(s.size(), at + 4); ++k) s[k] = pick(2) ? '\xff' : '\x7f';
          break;
      }
    }
    return s;
  }

  // Replaces one value somewhere in a JSON document with a hostile one.
  nlohmann::json json(nlohmann::json j) {
    static const std::vector<nlohmann::json> hostile = {
        nullptr, -1, 1e300, "", "../../../../etc/passwd", "/etc/passwd", "/dev/zero", "..", "a/../../b",
        std::string(1000, 'x'), nlohmann::json::array(), nlohmann::json::object(), true,
        std::numeric_limits<std::int64_t>::max(), "archive", "archive__restore_20261201_000000"};
    int edits = 1 + pick(3);
    for (int i = 0; i < edits; ++i) {
      std::vector<nlohmann::json*> nodes;
      collect(j, nodes);
      if (nodes.empty()) break;
      *nodes[pick(nodes.size())] = hostile[pick(hostile.size())];
    }
    return j;
  }

  std::size_t pick(std::size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<std::size_t>(0, n - 1)(m_rng); }

 private:
  static void collect(nlohmann::json& j, std::vector<nlohmann::json*>& out) {
    out.push_back(&j);
    if (j.is_object() || j.is_array()) {
      for (auto& v : j) collect(v, out);
    }
  }
  std::mt19937 m_rng;
};

// Bytes in memory as a Source.
struct StringSource : io::Source {
  std::string_view data;
  std::size_t read(std::span<char> buf) override {
    std::size_t n = std::min(buf.size(), data.size());
    std::memcpy(buf.data(), data.data(), n);
    data.remove_prefix(n);
    return n;
  }
};

// The digest of a folder tree: names, sizes, contents.
// A case's file, written in place without fsync: thousands of cases, nothing of which must
// survive a crash (write_file_atomic's two fsyncs a file were half of these tests' time).
void put(const fs::path& path, std::string_view bytes, mode_t mode = 0644) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) throw_errno("cannot create " + path.string());
  write_all(fd.get(), bytes.data(), bytes.size(), path.string());
}

std::string tree(const fs::path& dir) {
  std::string out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    out += it->path().string() + "\n";
    if (it->is_regular_file(ec)) out += read_file(it->path()) + "\n";
  }
  return out;
}

// The codes a reader may refuse with: a damaged or forged file is `verification`; `usage` where
// the reader also judges what the file asks for (a dump version it does not read, keys a target
// cannot hold); any code but `internal` (a bug) for the commands over metadata.
using Codes = std::set<ErrorCode>;
const Codes kDamaged = {ErrorCode::verification};
const Codes kDamagedOrRefused = {ErrorCode::verification, ErrorCode::usage};
const Codes kAnyButInternal = {ErrorCode::usage,  ErrorCode::connection, ErrorCode::not_found, ErrorCode::verification,
                               ErrorCode::io,     ErrorCode::tool_failed, ErrorCode::locked,  ErrorCode::stale,
                               ErrorCode::check_failed, ErrorCode::repair_needed, ErrorCode::wrong_clock,
                               ErrorCode::confirmation_required};

// Runs `fn`; a backupctl::Error with a message and one of `allowed` is a clear refusal, anything
// else a failure. Returns whether it refused.
template <typename Fn>
bool expect_clear(const std::string& what, const Codes& allowed, Fn fn) {
  try {
    fn();
    return false;
  } catch (const Error& e) {
    EXPECT_FALSE(std::string(e.what()).empty()) << what << ": an error without a message";
    EXPECT_TRUE(allowed.count(e.code())) << what << ": refused with code " << static_cast<int>(e.code()) << ": "
                                         << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": not a clear refusal: " << typeid(e).name() << ": " << e.what();
  } catch (...) {
    ADD_FAILURE() << what << ": an unknown exception";
  }
  return true;
}

class Fuzz : public ::testing::Test {
 protected:
  TempDir root;  // everything of this test; `sentinel` inside it must never change
  fs::path backups, app, objects, target, sentinel, tmp;
  int cases = env_int("BACKUPCTL_FUZZ_CASES", 2000);
  std::uint32_t seed = static_cast<std::uint32_t>(env_int("BACKUPCTL_FUZZ_SEED", 20261201));
  std::string dump, objects_tar, config_tar, dump_meta, objects_meta, config_meta, set_json, journal_json;

  void SetUp() override {
    backups = root.path() / "backups";
    app = root.path() / "app";
    objects = root.path() / "objects";
    target = root.path() / "target";
    sentinel = root.path() / "sentinel";
    tmp = root.path() / "tmp";
    for (const auto& d : {backups, app / "infra/monitoring", objects / "attachments/docs", target, sentinel, tmp}) make_dirs(d);
    write_file_atomic(sentinel / "keep.txt", "must not change");
    write_file_atomic(app / "infra/env", "POSTGRES_PASSWORD=x\nLOG_LEVEL=info\n");
    write_file_atomic(app / "infra/docker-compose.yml", "services:\n  api:\n    command: [\"--token\", \"t\"]\n");
    write_file_atomic(app / "infra/monitoring/prometheus.yml", "scrape: 15s\n");
    fs::create_symlink("prometheus.yml", app / "infra/monitoring/current.yml");
    for (int i = 0; i < 12; ++i) {
      write_file_atomic(objects / "attachments/docs" / ("d" + std::to_string(i) + ".txt"), std::string(200 + i, 'a' + i));
    }
    // Real backups, made the way an operator makes them.
    PgCluster pg;
    pg.create_database("archive");
    pg.psql("archive", "CREATE TABLE documents AS SELECT i AS id, md5(i::text) AS t FROM generate_series(1, 3000) i;"
                       "CREATE TABLE notes (x text); INSERT INTO notes VALUES ('a'), (NULL)");
    EnvList e = backup_env(pg, "archive", backups);
    e.emplace_back("APP_ROOT", app.string());
    e.emplace_back("OBJECT_STORAGE", "disk");
    e.emplace_back("OBJECT_STORAGE_DIR", objects.string());
    CliResult all = run_backupctl({"backup", "all", "--json"}, e);
    ASSERT_EQ(all.exit_code, 0) << all.err;
    auto j = nlohmann::json::parse(all.out);
    auto path = [&](const char* kind) { return backups / j["set"]["parts"][kind]["path"].get<std::string>(); };
    dump = read_file(path("db"));
    objects_tar = read_file(path("objects"));
    config_tar = read_file(path("config"));
    config_meta = read_file(path("config").string() + ".meta");
    dump_meta = read_file(path("db").string() + ".meta");
    objects_meta = read_file(path("objects").string() + ".meta");
    set_json = read_file(j["set_file"].get<std::string>());
    journal_json = nlohmann::json({{"journal_version", 1}, {"command", "restore db"}, {"pid", 1}, {"step", "restore-db.load"},
                                   {"pending",
                                    {{{"id", 1}, {"type", "services"}, {"data", {{"start", {"true"}}}}},
                                     {{"id", 2}, {"type", "temp_dir"}, {"data", {{"path", (tmp / "backupctl-x").string()}}}},
                                     {{"id", 3}, {"type", "prune"}, {"data", {{"files", {"db/archive_archive_20200101_000000.dump"}}}}},
                                     {{"id", 4}, {"type", "config_apply"}, {"data", {{"app_root", app.string()}, {"items", {{{"path", "infra/env"}, {"action", "write"}, {"existed", true}}}}}}},
                                     {{"id", 5}, {"type", "side_database"}, {"data", {{"live", "archive"}, {"name", "archive__restore_20261201_000000"}, {"server", {{"host", "/nonexistent"}}}}}}}}})
                       .dump();
    ::setenv("TMPDIR", tmp.string().c_str(), 1);
  }
  void TearDown() override { ::unsetenv("TMPDIR"); }

  Config config() {
    ::setenv("APP_ROOT", app.c_str(), 1);
    ::setenv("BACKUP_DIR", backups.c_str(), 1);
    ::setenv("OBJECT_STORAGE", "disk", 1);
    ::setenv("OBJECT_STORAGE_DIR", objects.c_str(), 1);
    ::setenv("SERVICE_CONTROL", "none", 1);
    ::setenv("PGHOST", "/nonexistent", 1);
    Config c = Config::from_environment();
    for (const char* v : {"APP_ROOT", "BACKUP_DIR", "OBJECT_STORAGE", "OBJECT_STORAGE_DIR", "SERVICE_CONTROL", "PGHOST"}) ::unsetenv(v);
    return c;
  }

  void expect_sentinel(const std::string& when) {
    EXPECT_EQ(read_file(sentinel / "keep.txt"), "must not change") << when;
    EXPECT_EQ(list_dir(sentinel), std::vector<std::string>{"keep.txt"}) << when;
  }
};

}  // namespace

TEST_F(Fuzz, DumpsThroughTheDumpParser) {
  Mutator m(seed);
  for (int i = 0; i < cases; ++i) {
    std::string bytes = m.bytes(dump);
    expect_clear("dump case " + std::to_string(i), kDamagedOrRefused, [&] {
      io::StringSink null;
      DumpInflater reader(null);
      StringSource src;
      src.data = bytes;
      if (auto h = read_dump_header(src)) (void)h;
      src.data = bytes;
      reader.run(src);
    });
    if (HasFailure()) FAIL() << "seed " << seed << ", case " << i;
  }
  // What a user sees for the commonest damage: the reason, not only a refusal.
  auto refusal = [&](std::string bytes) {
    try {
      io::StringSink null;
      DumpInflater reader(null);
      StringSource src;
      src.data = bytes;
      reader.run(src);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::verification) << e.what();
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(refusal("NOTADUMP" + dump.substr(8)).find("no PGDMP header"), std::string::npos);
  EXPECT_NE(refusal(dump.substr(0, dump.size() / 2)).find("ends early"), std::string::npos)
      << refusal(dump.substr(0, dump.size() / 2));
}

TEST_F(Fuzz, AttachmentTarsThroughTheCheckAndTheRestoreIntoAFolder) {
  Mutator m(seed + 1);
  Config c = config();
  fs::path file = backups / "objects/objects_disk_20300101_000000.tar.gz";
  const std::string before = tree(objects);
  for (int i = 0; i < cases; ++i) {
    std::string bytes = m.bytes(objects_tar);
    put(file, bytes);
    // Every other case keeps the meta: then any changed byte must be refused, as damaged, before
    // anything is written. Without it the manifest is checked against every entry's bytes.
    const bool with_meta = i % 2 == 1;
    if (with_meta) {
      put(file.string() + ".meta", objects_meta);
    } else {
      fs::remove(file.string() + ".meta");
    }
    const std::string target_before = tree(target);
    bool refused = expect_clear("objects case " + std::to_string(i), kDamagedOrRefused, [&] {
      NoProgress quiet;
      DiskStore store(target);
      RestoreObjectsOptions o;
      o.file = file;
      o.allow_no_meta = true;
      ObjectsPlan plan = plan_restore_objects(c, store, o, quiet);
      if (i % 10 == 0) {  // the upload too, into the target folder
        Journal journal(backups, "fuzz", [](const std::string&, const nlohmann::json&) {});
        run_restore_objects(c, store, plan, journal, quiet);
      }
    });
    if (with_meta && bytes != objects_tar) {
      EXPECT_TRUE(refused) << "objects case " << i << ": a changed byte was accepted with the meta there";
      EXPECT_EQ(tree(target), target_before) << "objects case " << i << ": a refused file wrote";
    }
    if (HasFailure()) FAIL() << "seed " << seed + 1 << ", case " << i;
  }
  EXPECT_EQ(tree(objects), before) << "a restore into the target folder wrote into the live one";
  expect_sentinel("objects");
}

TEST_F(Fuzz, ConfigTarsThroughThePreview) {
  Mutator m(seed + 2);
  Config c = config();
  fs::path file = backups / "config/config_20300101_000000.tar.gz";
  const std::string before = tree(app);
  int previews = std::max(1, cases / 10);  // each diff runs diff(1)
  for (int i = 0; i < previews; ++i) {
    std::string bytes = m.bytes(config_tar);
    put(file, bytes);
    const bool with_meta = i % 2 == 1;
    if (with_meta) {
      put(file.string() + ".meta", config_meta);
    } else {
      fs::remove(file.string() + ".meta");
    }
    bool refused = expect_clear("config case " + std::to_string(i), kDamagedOrRefused,
                                [&] { preview_config(c, file, NoMeta::allow); });
    if (with_meta && bytes != config_tar) {
      EXPECT_TRUE(refused) << "config case " << i << ": a changed byte was accepted with the meta there";
    }
    if (HasFailure()) FAIL() << "seed " << seed + 2 << ", case " << i;
  }
  for (int i = 0; i < cases; ++i) {
    std::string bytes = m.bytes(config_tar);
    expect_clear("config tar case " + std::to_string(i), kDamaged, [&] {
      StringSource src;
      src.data = bytes;
      TarReader reader(src);
      TarEntry e;
      std::vector<char> buf(4096);
      while (reader.next(e)) {
        while (reader.read(buf) > 0) {
        }
      }
    });
    if (HasFailure()) FAIL() << "seed " << seed + 2 << ", case " << i;
  }
  EXPECT_EQ(tree(app), before) << "a preview wrote";
  expect_sentinel("config");
}

TEST_F(Fuzz, MetasSetsManifestsAndJournalsThroughListStatusPruneRestoreAllAndRepair) {
  Mutator m(seed + 3);
  Config c = config();
  const auto dump_path = [&] {
    for (const auto& f : list_dir(backups / "db")) {
      if (f.ends_with(".dump")) return backups / "db" / f;
    }
    return fs::path();
  }();
  ASSERT_FALSE(dump_path.empty());
  const auto objects_path = [&] {
    for (const auto& f : list_dir(backups / "objects")) {
      if (f.ends_with(".tar.gz")) return backups / "objects" / f;
    }
    return fs::path();
  }();
  const auto set_path = backups / "sets" / list_dir(backups / "sets").at(0);
  auto text_or_json = [&](const std::string& original) {
    if (m.pick(3) == 0) return m.bytes(original);
    auto j = nlohmann::json::parse(original, nullptr, false);
    return j.is_discarded() ? m.bytes(original) : m.json(j).dump();
  };
  for (int i = 0; i < cases; ++i) {
    put(dump_path.string() + ".meta", text_or_json(dump_meta));
    put(objects_path.string() + ".meta", text_or_json(objects_meta));
    put(set_path, text_or_json(set_json));
    const std::string what = "metadata case " + std::to_string(i);
    expect_clear(what + " (meta)", kDamaged, [&] { read_meta(dump_path.string() + ".meta"); });
    expect_clear(what + " (list)", kAnyButInternal, [&] {
      auto entries = list_backups(c, std::nullopt);
      backups_table(entries, c.backup_dir);
      backups_json(entries, c.backup_dir);
    });
    expect_clear(what + " (status)", kAnyButInternal, [&] { backup_status(c, Clock::now()); });
    expect_clear(what + " (set)", kAnyButInternal, [&] {
      nlohmann::json set = find_set(c, "latest", SetScope{"archive", "disk", Clock::now()});
      for (const char* kind : {"db", "objects", "config"}) set_part_path(c, set, kind);
    });
    expect_clear(what + " (manifest)", kDamaged, [&] {
      auto j = nlohmann::json::parse(text_or_json(nlohmann::json::parse(objects_meta).dump()), nullptr, false);
      if (!j.is_discarded()) Manifest::from_json(j);
    });
    expect_clear(what + " (prune)", kAnyButInternal, [&] { prune(c, i % 2 == 0 ? DryRun::yes : DryRun::no, std::nullopt, Clock::now() + std::chrono::hours(24 * 400)); });
    if (i % 4 == 0) {
      make_dirs(backups / "journal", 0700);
      put(backups / "journal/run_20300101_000000_1.json", text_or_json(journal_json), 0600);
      expect_clear(what + " (repair)", kAnyButInternal, [&] { repair_interrupted_runs(c, LockHeld::no); });
      for (const auto& f : list_dir(backups / "journal")) fs::remove(backups / "journal" / f);
    }
    expect_clear(what + " (env file)", kAnyButInternal, [&] { parse_env_file(m.bytes("A=1\nexport B='two'\nC=\"x\\ny\"\n"), "fuzz"); });
    if (HasFailure()) FAIL() << "seed " << seed + 3 << ", case " << i;
    if (!fs::exists(dump_path) || !fs::exists(objects_path)) break;  // a prune took them: nothing left to mutate
  }
  expect_sentinel("metadata");
}

}  // namespace backupctl::test
