#include "pg/parallel_load.hpp"

#include <fmt/format.h>

#include <cstring>

#include "pg/connection.hpp"
#include "util/error.hpp"

namespace backupctl {

namespace {

constexpr std::size_t kBatchBytes = 4 << 20;
// pg_dump ends every table's COPY text with this (dumpTableData_copy).
constexpr std::string_view kEndOfData = "\\.\n\n\n";

std::string table_name(const DumpTocEntry& e) { return e.schema + "." + e.tag; }

std::string server_message(PGconn* conn, PGresult* res = nullptr) {
  std::string msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

// One connection's COPY of one table, in blocking mode.
class CopyIn {
 public:
  CopyIn(PgConnection& conn, const DumpTocEntry& entry) : m_conn(conn.get()), m_entry(entry) {
    PGresult* res = PQexec(m_conn, entry.copy_stmt.c_str());
    bool ok = PQresultStatus(res) == PGRES_COPY_IN;
    std::string msg = ok ? "" : server_message(m_conn, res);
    PQclear(res);
    if (!ok) throw failure(msg);
  }
  ~CopyIn() {
    if (m_open) {
      PQputCopyEnd(m_conn, "restore aborted");
      drain();
    }
  }
  void put(const std::string& bytes) {
    if (PQputCopyData(m_conn, bytes.data(), static_cast<int>(bytes.size())) != 1) {
      throw failure(server_message(m_conn));
    }
  }
  // Commits the COPY; the rows the server took.
  std::int64_t end() {
    m_open = false;
    if (PQputCopyEnd(m_conn, nullptr) != 1) throw failure(server_message(m_conn));
    std::int64_t rows = -1;
    std::string error;
    while (PGresult* res = PQgetResult(m_conn)) {
      if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        rows = std::strtoll(PQcmdTuples(res), nullptr, 10);
      } else if (error.empty()) {
        error = server_message(m_conn, res);
      }
      PQclear(res);
    }
    if (!error.empty() || rows < 0) throw failure(error.empty() ? "no result" : error);
    return rows;
  }

 private:
  void drain() {
    while (PGresult* res = PQgetResult(m_conn)) PQclear(res);
  }
  Error failure(const std::string& msg) const {
    const std::string what = fmt::format("loading the data of {} failed: {}", table_name(m_entry), msg);
    if (PQstatus(m_conn) == CONNECTION_BAD) {
      return Error(ErrorCode::connection, what, "the connection to the server was lost; check the server log");
    }
    return Error(ErrorCode::tool_failed, what,
                 "the archive's data does not fit the table the archive itself created; the backup may be damaged");
  }
  PGconn* m_conn;
  const DumpTocEntry& m_entry;
  bool m_open = true;
};

}  // namespace

std::string ParallelCopyLoader::session_sql(const std::vector<DumpTocEntry>& toc) {
  // What pg_restore sets on its connections (_doSetFixedOutputState), the archive's own settings,
  // and asynchronous commit: a crash mid-restore leaves a side database that is dropped anyway,
  // and the commit of the swap flushes everything written before it.
  std::string sql =
      "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; "
      "SET xmloption = content; SET client_min_messages = warning; SET row_security = off; "
      "SET synchronous_commit = off;\n";
  for (const auto& e : toc) {
    if (e.desc == "ENCODING" || e.desc == "STDSTRINGS" || e.desc == "SEARCHPATH") sql += e.defn + "\n";
  }
  return sql;
}

ParallelCopyLoader::ParallelCopyLoader(const PgTarget& db, int connections, std::string session_sql)
    : m_max_queue(static_cast<std::size_t>(2 * connections)) {
  m_pending.reserve(kBatchBytes + (1 << 20));
  for (int i = 0; i < connections; ++i) {
    m_workers.emplace_back([this, db, session_sql] { work(db, session_sql); });
  }
}

ParallelCopyLoader::~ParallelCopyLoader() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!m_closed) m_aborted = true;
  }
  stop_workers();
}

void ParallelCopyLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_closed = true;
  }
  m_can_pop.notify_all();
  m_can_push.notify_all();
  for (auto& t : m_workers) {
    if (t.joinable()) t.join();
  }
}

void ParallelCopyLoader::fail(std::exception_ptr e) {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!m_failure) m_failure = e;
    m_aborted = true;
  }
  m_can_pop.notify_all();
  m_can_push.notify_all();
}

void ParallelCopyLoader::rethrow_failure() {
  std::lock_guard<std::mutex> lock(m_mutex);
  if (m_failure) std::rethrow_exception(m_failure);
}

bool ParallelCopyLoader::loaded_now(const DumpTocEntry* entry) {
  auto it = m_state.find(entry);
  if (it == m_state.end() || !it->second.ended || it->second.queued > 0 || it->second.open > 0) return false;
  m_state.erase(it);  // reported once
  return true;
}

void ParallelCopyLoader::push(Batch batch) {
  std::unique_lock<std::mutex> lock(m_mutex);
  m_can_push.wait(lock, [&] { return m_aborted || m_queue.size() < m_max_queue; });
  if (m_failure) std::rethrow_exception(m_failure);
  if (m_aborted) throw Error(ErrorCode::internal, "the data loader was stopped");
  ++m_state[batch.entry].queued;
  m_queue.push_back(std::move(batch));
  lock.unlock();
  m_can_pop.notify_one();
}

bool ParallelCopyLoader::pop(Batch& batch, const DumpTocEntry* open_entry) {
  std::unique_lock<std::mutex> lock(m_mutex);
  m_can_pop.wait(lock, [&] { return m_aborted || m_closed || !m_queue.empty(); });
  if (m_aborted || m_queue.empty()) return false;
  batch = std::move(m_queue.front());
  m_queue.pop_front();
  EntryState& st = m_state[batch.entry];
  --st.queued;
  if (batch.entry != open_entry) ++st.open;
  lock.unlock();
  m_can_push.notify_one();
  return true;
}

void ParallelCopyLoader::work(const PgTarget& db, const std::string& session_sql) {
  try {
    PgConnection conn = PgConnection::open(db);
    conn.exec(session_sql);
    std::optional<CopyIn> copy;
    const DumpTocEntry* open_entry = nullptr;
    auto commit = [&] {
      std::int64_t rows = copy->end();
      copy.reset();
      bool loaded;
      {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_rows[open_entry->dump_id] += rows;
        --m_state[open_entry].open;
        loaded = loaded_now(open_entry);
      }
      if (loaded && m_on_loaded) m_on_loaded(*open_entry);
    };
    Batch batch;
    while (pop(batch, open_entry)) {
      if (batch.entry != open_entry) {
        if (copy) commit();
        open_entry = batch.entry;
        copy.emplace(conn, *open_entry);
      }
      copy->put(batch.bytes);
    }
    bool aborted;
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      aborted = m_aborted;
    }
    if (copy && !aborted) commit();  // else ~CopyIn aborts the COPY
  } catch (...) {
    fail(std::current_exception());
  }
}

void ParallelCopyLoader::data(const DumpTocEntry& entry, const char* p, std::size_t n) {
  if (m_entry != &entry) {
    if (m_entry) end(*m_entry);
    m_entry = &entry;
  }
  m_pending.append(p, n);
  // The last newline a batch may end at: not within the last bytes, which may be the start of the
  // end-of-data marker that end() removes. Only bytes not searched before are searched, so that a
  // line longer than a batch (a big bytea value, kept whole in m_pending) costs linear time.
  if (m_pending.size() > kEndOfData.size()) {
    const std::size_t limit = m_pending.size() - kEndOfData.size();
    if (limit > m_searched) {
      const void* nl = ::memrchr(m_pending.data() + m_searched, '\n', limit - m_searched);
      if (nl) m_last_newline = static_cast<std::size_t>(static_cast<const char*>(nl) - m_pending.data());
      m_searched = limit;
    }
  }
  if (m_pending.size() < kBatchBytes || m_last_newline == std::string::npos) return;
  send_pending(entry, m_last_newline + 1);
}

void ParallelCopyLoader::send_pending(const DumpTocEntry& entry, std::size_t cut) {
  Batch b{&entry, std::move(m_pending)};
  m_pending.assign(b.bytes, cut);
  m_pending.reserve(kBatchBytes + (1 << 20));
  m_searched = 0;
  m_last_newline = std::string::npos;
  b.bytes.resize(cut);
  push(std::move(b));
}

void ParallelCopyLoader::end(const DumpTocEntry& entry) {
  if (m_entry != &entry) {
    if (m_entry) end(*m_entry);
    m_entry = &entry;
  }
  if (m_pending.ends_with(kEndOfData)) m_pending.resize(m_pending.size() - kEndOfData.size());
  if (!m_pending.empty()) send_pending(entry, m_pending.size());
  m_entry = nullptr;
  bool loaded;
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_state[&entry].ended = true;
    loaded = loaded_now(&entry);  // a table without rows: nothing was ever queued
  }
  if (loaded && m_on_loaded) m_on_loaded(entry);
}

std::map<int, std::int64_t> ParallelCopyLoader::finish() {
  if (m_entry) end(*m_entry);
  stop_workers();
  rethrow_failure();
  return m_rows;
}

}  // namespace backupctl
