// Recreating the roles a restored database needs, from the `pg_dumpall --roles-only` file saved
// beside each dump. Only roles missing on the server are touched: existing roles keep their
// attributes, passwords and memberships.
#pragma once

#include <set>
#include <string>
#include <vector>

namespace backupctl {

class PgConnection;

struct RolesScript {
  std::vector<std::string> created;     // the missing roles, in file order
  std::vector<std::string> statements;  // CREATE/ALTER/COMMENT/GRANT for them, runnable via libpq
};

// From the text of a roles file and the roles the server has: the statements that create the
// missing ones (CREATE ROLE, ALTER ROLE ... WITH/SET, COMMENT ON ROLE, and GRANTs of memberships
// that involve a created role, without GRANTED BY). psql meta-commands and SET lines are dropped.
RolesScript missing_roles_script(const std::string& roles_sql, const std::set<std::string>& existing);

// Runs the script in one transaction. Throws Error(tool_failed) with a hint about CREATEROLE.
// Returns the names created.
std::vector<std::string> create_missing_roles(PgConnection& conn, const std::string& roles_sql);

}  // namespace backupctl
