#include "pg/target.hpp"

#include <libpq-fe.h>

#include <memory>

#include "util/env.hpp"
#include "util/error.hpp"

namespace backupctl {

namespace {

// libpq parses a URL without checking the port; do it here so the error names DATABASE_URL.
void check_ports(const std::string& value, const std::string& setting) {
  std::size_t start = 0;
  while (start <= value.size()) {
    std::size_t comma = value.find(',', start);
    std::string part = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    bool ok = !part.empty() && part.size() <= 5 &&
              part.find_first_not_of("0123456789") == std::string::npos && std::stoi(part) > 0 &&
              std::stoi(part) < 65536;
    if (!ok) {
      throw Error(ErrorCode::usage, "invalid " + setting + ": port '" + part + "' is not a number from 1 to 65535",
                  "use postgresql://user@host:5432/archive");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

}  // namespace

PgTarget PgTarget::from_environment() {
  if (auto url = env_value("DATABASE_URL")) return from_url(*url);
  PgTarget t;
  t.m_dbname = env_value("PGDATABASE").value_or("archive");
  return t;
}

PgTarget PgTarget::from_url(const std::string& url_text, const std::string& setting) {
  PgTarget t;
  std::optional<std::string> url = url_text;
  {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(url->c_str(), &err);
    if (opts == nullptr) {
      std::string why = err ? err : "cannot parse it";
      if (err) PQfreemem(err);
      while (!why.empty() && why.back() == '\n') why.pop_back();
      // The URL may hold a password: say what is wrong without echoing it.
      throw Error(ErrorCode::usage, "invalid " + setting + ": " + why,
                  "use postgresql://user@host:5432/archive (put the password in PGPASSWORD or "
                  "~/.pgpass)");
    }
    std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> guard(opts, PQconninfoFree);
    for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
      if (o->val == nullptr || *o->val == '\0') continue;
      std::string key = o->keyword;
      if (key == "dbname") {
        t.m_dbname = o->val;
        continue;
      }
      if (key == "port") check_ports(o->val, setting);
      t.m_params.emplace_back(key, o->val);
      if (o->envvar != nullptr) t.m_env.emplace_back(o->envvar, o->val);
    }
  }
  if (t.m_dbname.empty()) t.m_dbname = env_value("PGDATABASE").value_or("archive");
  return t;
}

PgTarget PgTarget::with_database(std::string dbname) const {
  PgTarget t = *this;
  t.m_dbname = std::move(dbname);
  return t;
}

PgTarget PgTarget::with_server(const std::string& host, const std::string& port, const std::string& user) const {
  PgTarget t;
  t.m_dbname = m_dbname;
  for (const auto& [k, v] : m_params) {
    if (k == "password") {
      t.m_params.emplace_back(k, v);
      t.m_env.emplace_back("PGPASSWORD", v);
    }
  }
  auto set = [&](const char* key, const char* var, const std::string& value) {
    if (value.empty()) return;
    t.m_params.emplace_back(key, value);
    t.m_env.emplace_back(var, value);
  };
  set("host", "PGHOST", host);
  set("port", "PGPORT", port);
  set("user", "PGUSER", user);
  return t;
}

std::vector<std::pair<std::string, std::optional<std::string>>> PgTarget::child_env() const {
  std::vector<std::pair<std::string, std::optional<std::string>>> env;
  for (const auto& [k, v] : m_env) env.emplace_back(k, v);
  env.emplace_back("PGDATABASE", m_dbname);
  if (!env_value("PGCONNECT_TIMEOUT")) env.emplace_back("PGCONNECT_TIMEOUT", "10");
  return env;
}

}  // namespace backupctl
