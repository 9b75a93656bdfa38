// A text picture of a database to compare before and after a backup round trip: the schema (as
// pg_dump prints it), every table's row count and content digest, large objects, sequence values,
// and the database-level owner, encoding, collation, settings, grants and comment.
#pragma once

#include <string>

#include "fixture.hpp"

namespace backupctl::test {

std::string snapshot(const PgCluster& cluster, const std::string& db);

// Creates roles archive_owner and archive_reader, database "rich" owned by archive_owner, and
// loads sql/rich_db.sql into it.
void create_rich_database(const PgCluster& cluster);

}  // namespace backupctl::test
