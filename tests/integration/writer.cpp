#include "writer.hpp"

#include <signal.h>

#include <fstream>

namespace backupctl::test {

std::vector<Event> read_events(const fs::path& log) {
  std::vector<Event> out;
  std::ifstream in(log);
  long long ns;
  std::string what;
  while (in >> ns >> what) out.push_back({ns, what});
  return out;
}

long long first(const std::vector<Event>& ev, const std::string& what, long long after) {
  for (const auto& e : ev) {
    if (e.what == what && e.ns >= after) return e.ns;
  }
  return -1;
}

int count_between(const std::vector<Event>& ev, const std::string& what, long long from, long long to) {
  int n = 0;
  for (const auto& e : ev) n += e.what == what && e.ns > from && e.ns < to;
  return n;
}

void create_restore_tables(const PgCluster& pg, const std::string& db, int big_rows) {
  pg.psql(db,
          "CREATE TABLE heartbeat (at timestamptz NOT NULL);"
          "CREATE TABLE documents AS SELECT i AS id, 'doc ' || i AS title FROM generate_series(1, 1000) i;"
          "ALTER TABLE documents ADD PRIMARY KEY (id);"
          "CREATE TABLE big AS SELECT i, repeat(md5(i::text), 10) AS filler FROM generate_series(1, " +
              std::to_string(big_rows) + ") i;"
          "CREATE INDEX ON big (filler);");
}

Writer::Writer() : m_state("backupctl-writer") {}

Writer::~Writer() {
  run_command({.argv = {script(), "stop", m_state.path().string()}});
  run_command({.argv = {"pkill", "-f", m_state.path().string()}});
}

std::string Writer::script() const {
  return (fs::path(BACKUPCTL_SOURCE_DIR) / "tests/integration/bin/writer.sh").string();
}

EnvList Writer::service_env() const {
  return {{"SERVICE_CONTROL", "command"},
          {"SERVICE_STOP_CMD", script() + " stop " + m_state.path().string()},
          {"SERVICE_START_CMD", script() + " start " + m_state.path().string()}};
}

void Writer::start(const PgCluster& pg, const std::string& db) {
  RunResult r = run_command({.argv = {script(), "start", m_state.path().string()}, .env = pg.env(db)});
  ASSERT_TRUE(r.status.ok()) << r.err;
  ASSERT_TRUE(wait_for([&] { return first(read_events(log()), "ok") > 0; }, 10));
}

bool Writer::running() const {
  std::error_code ec;
  if (!fs::exists(m_state.path() / "pid", ec)) return false;
  // Alive and not a zombie (kill -0 succeeds on a zombie that PID 1 has not reaped yet).
  std::string stat;
  try {
    pid_t pid = std::stoi(read_file(m_state.path() / "pid"));
    stat = read_file(fs::path("/proc") / std::to_string(pid) / "stat");
  } catch (const std::exception&) {
    return false;
  }
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

void Writer::expect_running() const {
  auto ev = read_events(log());
  ASSERT_FALSE(ev.empty());
  long long restarted = -1, stopped = -1;
  for (const auto& e : ev) {
    if (e.what == "started") restarted = e.ns;
    if (e.what == "stopped") stopped = e.ns;
  }
  EXPECT_GT(restarted, stopped) << "the services were left stopped";
  EXPECT_TRUE(running()) << "the services were left stopped";
  EXPECT_TRUE(wait_for([&] { return first(read_events(log()), "ok", restarted) > 0; }, 10))
      << "the writer does not write after the restore; its last events:\n" << [&] {
           auto all = read_events(log());
           std::string tail;
           for (std::size_t i = all.size() > 12 ? all.size() - 12 : 0; i < all.size(); ++i) {
             tail += std::to_string(all[i].ns) + " " + all[i].what + "\n";
           }
           return tail;
         }();
}

}  // namespace backupctl::test
