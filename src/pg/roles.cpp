#include "pg/roles.hpp"

#include <spdlog/spdlog.h>

#include "pg/connection.hpp"
#include "util/error.hpp"

namespace backupctl {
namespace {

// Reads an identifier at the start of `s` (bare or "quoted") and advances past it.
std::string take_identifier(std::string_view& s) {
  std::string id;
  if (!s.empty() && s[0] == '"') {
    std::size_t i = 1;
    for (; i < s.size(); ++i) {
      if (s[i] == '"') {
        if (i + 1 < s.size() && s[i + 1] == '"') {
          id += '"';
          ++i;
          continue;
        }
        ++i;
        break;
      }
      id += s[i];
    }
    s.remove_prefix(i);
  } else {
    std::size_t i = 0;
    while (i < s.size() && s[i] != ' ' && s[i] != ';' && s[i] != ',') ++i;
    id = std::string(s.substr(0, i));
    s.remove_prefix(i);
  }
  return id;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Splits into statements: pg_dumpall writes one per line, but a quoted literal (a COMMENT) may
// span lines, so a statement ends at a ';' that closes a line outside quotes.
std::vector<std::string> statements_of(const std::string& sql) {
  std::vector<std::string> out;
  std::string current;
  bool in_quote = false;
  std::size_t pos = 0;
  while (pos < sql.size()) {
    std::size_t nl = sql.find('\n', pos);
    std::string line = sql.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? sql.size() : nl + 1;
    if (!in_quote && (line.empty() || starts_with(line, "--") || starts_with(line, "\\"))) continue;
    for (char c : line) {
      if (c == '\'') in_quote = !in_quote;
    }
    current += (current.empty() ? "" : "\n") + line;
    if (!in_quote && !line.empty() && line.back() == ';') {
      out.push_back(std::move(current));
      current.clear();
    }
  }
  return out;
}

}  // namespace

RolesScript missing_roles_script(const std::string& roles_sql, const std::set<std::string>& existing) {
  RolesScript script;
  std::set<std::string> created;
  std::vector<std::string> statements = statements_of(roles_sql);
  for (const std::string& stmt : statements) {
    std::string_view s = stmt;
    if (starts_with(s, "CREATE ROLE ")) {
      s.remove_prefix(12);
      std::string role = take_identifier(s);
      if (!existing.count(role) && created.insert(role).second) {
        script.created.push_back(role);
        script.statements.push_back(stmt);
      }
    }
  }
  for (const std::string& stmt : statements) {
    std::string_view s = stmt;
    std::string_view rest;
    if (starts_with(s, "ALTER ROLE ")) {
      rest = s.substr(11);
    } else if (starts_with(s, "COMMENT ON ROLE ")) {
      rest = s.substr(16);
    } else if (starts_with(s, "SECURITY LABEL ")) {
      auto on = s.find(" ON ROLE ");
      if (on == std::string_view::npos) continue;
      rest = s.substr(on + 9);
    } else if (starts_with(s, "GRANT ")) {
      // GRANT a TO b [WITH ADMIN OPTION] [GRANTED BY c];
      std::string_view g = s.substr(6);
      std::string granted = take_identifier(g);
      if (!starts_with(g, " TO ")) continue;
      g.remove_prefix(4);
      std::string member = take_identifier(g);
      if (!created.count(granted) && !created.count(member)) continue;
      std::string out = stmt;
      if (auto by = out.find(" GRANTED BY "); by != std::string::npos) out = out.substr(0, by) + ";";
      script.statements.push_back(out);
      continue;
    } else {
      continue;
    }
    std::string role = take_identifier(rest);
    if (created.count(role)) script.statements.push_back(stmt);
  }
  return script;
}

std::vector<std::string> create_missing_roles(PgConnection& conn, const std::string& roles_sql) {
  std::set<std::string> existing;
  for (const auto& row : conn.query("SELECT rolname FROM pg_roles")) existing.insert(*row[0]);
  RolesScript script = missing_roles_script(roles_sql, existing);
  if (script.created.empty()) return {};
  try {
    conn.exec("BEGIN");
    for (const std::string& stmt : script.statements) conn.exec(stmt);
    conn.exec("COMMIT");
  } catch (const Error& e) {
    try {
      conn.exec("ROLLBACK");
    } catch (const Error&) {
    }
    throw Error(ErrorCode::tool_failed, std::string("cannot create the missing roles: ") + e.what(),
                "the restoring user needs CREATEROLE (or superuser); or create the roles by hand "
                "from the .roles.sql file beside the dump");
  }
  for (const auto& r : script.created) spdlog::info("restore: created role {}", r);
  return script.created;
}

}  // namespace backupctl
