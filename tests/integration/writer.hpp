// The app's services in restore tests: tests/integration/bin/writer.sh, a loop that inserts into
// heartbeat(at) of the database every ~20 ms and logs each attempt, stopped and started by
// backupctl through SERVICE_CONTROL=command. Its log tells what a user would see: whether the app
// wrote while the database was replaced, and whether it runs (and writes) again afterwards.
#pragma once

#include <string>
#include <vector>

#include "fixture.hpp"

namespace backupctl::test {

// One line of the shared event log: "<ns> <event>" (started, stopped, ok, fail, pg_restore).
struct Event {
  long long ns;
  std::string what;
};

std::vector<Event> read_events(const fs::path& log);
// The first event `what` at or after `after` (ns), or -1.
long long first(const std::vector<Event>& ev, const std::string& what, long long after = 0);
int count_between(const std::vector<Event>& ev, const std::string& what, long long from, long long to);

// The database restore tests replace: heartbeat (the writer's), documents (1000 rows, a primary
// key) and big (`big_rows` rows with an index: what makes a restore take a while).
void create_restore_tables(const PgCluster& pg, const std::string& db, int big_rows);

class Writer {
 public:
  Writer();
  ~Writer();  // never leaves a writer running

  const fs::path& dir() const { return m_state.path(); }
  fs::path log() const { return m_state.path() / "log"; }
  std::string script() const;

  // SERVICE_CONTROL=command with this writer as the services.
  EnvList service_env() const;
  // Starts it against `pg`/`db` and waits for its first write.
  void start(const PgCluster& pg, const std::string& db);
  // Whether it runs now (its pid file names a live process).
  bool running() const;
  // EXPECTs: started again after its last stop, and writing.
  void expect_running() const;

 private:
  TempDir m_state;
};

}  // namespace backupctl::test
