#include "pg/background_analyze.hpp"

#include <optional>

#include "pg/connection.hpp"

namespace backupctl {

BackgroundAnalyzer::BackgroundAnalyzer(PgTarget db) : m_db(std::move(db)) {
  m_thread = std::thread([this] { work(); });
}

BackgroundAnalyzer::~BackgroundAnalyzer() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_stopped = true;
    m_closed = true;
    if (m_cancel) {
      char err[256];
      PQcancel(m_cancel, err, sizeof err);  // best effort: the ANALYZE ends with an error
    }
  }
  m_cv.notify_all();
  if (m_thread.joinable()) m_thread.join();
}

void BackgroundAnalyzer::add(const std::string& schema, const std::string& table) {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_queue.push_back(quote_ident(schema) + "." + quote_ident(table));
  }
  m_cv.notify_all();
}

std::set<std::string> BackgroundAnalyzer::finish() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_closed = true;
  }
  m_cv.notify_all();
  if (m_thread.joinable()) m_thread.join();
  if (m_failure) std::rethrow_exception(m_failure);
  return m_done;
}

void BackgroundAnalyzer::work() {
  try {
    std::optional<PgConnection> conn;
    for (;;) {
      std::string table;
      {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_cv.wait(lock, [&] { return m_stopped || m_closed || !m_queue.empty(); });
        if (m_stopped || m_queue.empty()) return;
        table = std::move(m_queue.front());
        m_queue.pop_front();
      }
      if (!conn) conn.emplace(PgConnection::open(m_db));
      {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_stopped) return;
        m_cancel = PQgetCancel(conn->get());
      }
      std::exception_ptr failure;
      try {
        conn->exec("ANALYZE " + table);
      } catch (...) {
        failure = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(m_mutex);
        PQfreeCancel(m_cancel);
        m_cancel = nullptr;
        if (!failure) m_done.insert(table);
      }
      if (failure) std::rethrow_exception(failure);
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!m_stopped) m_failure = std::current_exception();
  }
}

}  // namespace backupctl
