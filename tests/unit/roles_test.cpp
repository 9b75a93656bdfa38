// pg/roles.hpp: the roles a restore creates on a server that lacks them.
#include <gtest/gtest.h>

#include "pg/roles.hpp"

namespace backupctl {

TEST(Roles, OnlyMissingRolesAreCreatedWithTheirAttributesAndMemberships) {
  const std::string roles =
      "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc\n\n"
      "SET default_transaction_read_only = off;\n\n"
      "CREATE ROLE archive_owner;\n"
      "ALTER ROLE archive_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;\n"
      "CREATE ROLE \"Odd \"\"Role\";\n"
      "ALTER ROLE \"Odd \"\"Role\" WITH NOLOGIN;\n"
      "CREATE ROLE postgres;\n"
      "ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;\n"
      "COMMENT ON ROLE archive_owner IS 'owns the\narchive; really';\n"
      "ALTER ROLE archive_owner SET work_mem TO '8MB';\n"
      "GRANT \"Odd \"\"Role\" TO archive_owner GRANTED BY postgres;\n"
      "GRANT pg_read_all_data TO postgres GRANTED BY postgres;\n"
      "\\unrestrict abc\n";
  RolesScript s = missing_roles_script(roles, {"postgres", "pg_read_all_data"});
  EXPECT_EQ(s.created, (std::vector<std::string>{"archive_owner", "Odd \"Role"}));
  EXPECT_EQ(s.statements,
            (std::vector<std::string>{
                "CREATE ROLE archive_owner;",
                "CREATE ROLE \"Odd \"\"Role\";",
                "ALTER ROLE archive_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;",
                "ALTER ROLE \"Odd \"\"Role\" WITH NOLOGIN;",
                "COMMENT ON ROLE archive_owner IS 'owns the\narchive; really';",
                "ALTER ROLE archive_owner SET work_mem TO '8MB';",
                "GRANT \"Odd \"\"Role\" TO archive_owner;",
            }));
  EXPECT_TRUE(missing_roles_script(roles, {"postgres", "archive_owner", "Odd \"Role"}).statements.empty());
}

}  // namespace backupctl
