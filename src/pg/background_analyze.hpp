// ANALYZE of tables handed over one at a time, on a connection and thread of its own, while the
// caller goes on with other work.
//
// Why: a restore's tables are analyzed so the first queries after the swap have statistics.
// Analyzing every table after the indexes are built puts all of it on the restore's critical
// path (0.25 s of 7.3 s for the 1.4 GB benchmark database); analyzing each table as soon as its
// rows are committed (ParallelCopyLoader::on_loaded) does most of it while later tables still
// load, when the loader leaves the cores partly idle. The restore waits for it before the
// post-data section. Statistics of plain columns do not depend on indexes; tables whose
// statistics do (expression indexes, extended statistics, inheritance parents) are analyzed
// again at the end (analyze_tables in restore_db.cpp).
#pragma once

#include <libpq-fe.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "pg/target.hpp"

namespace backupctl {

class BackgroundAnalyzer {
 public:
  explicit BackgroundAnalyzer(PgTarget db);
  // Without finish(): cancels the ANALYZE in progress and drops the rest.
  ~BackgroundAnalyzer();
  BackgroundAnalyzer(const BackgroundAnalyzer&) = delete;
  BackgroundAnalyzer& operator=(const BackgroundAnalyzer&) = delete;

  // Queues ANALYZE of `table` (schema and name, unquoted). Thread-safe; does not block.
  void add(const std::string& schema, const std::string& table);
  // Waits until every queued table is analyzed; rethrows the first failure. Returns the tables
  // analyzed, as quote_ident(schema) + "." + quote_ident(table).
  std::set<std::string> finish();

 private:
  void work();

  PgTarget m_db;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<std::string> m_queue;
  std::set<std::string> m_done;
  bool m_closed = false;
  bool m_stopped = false;
  std::exception_ptr m_failure;
  PGcancel* m_cancel = nullptr;  // of the running ANALYZE, under m_mutex
  std::thread m_thread;
};

}  // namespace backupctl
