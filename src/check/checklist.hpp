// The post-restore checklist (plan §4.5 and §5.3): a declarative file of checks that prove the
// restored system works, run after every restore and by rehearsals, and on its own by
// `backupctl check`. infra/backup-checks.toml:
//
//   [[check]]                        an HTTP endpoint
//   name = "health"
//   kind = "http"
//   url = "${API_URL}/api/health"    ${VAR} comes from the environment (API_URL defaults to
//   status = 200                     http://127.0.0.1:8000); or url_sql = "SELECT '/path/' || ..."
//   json_nonempty = "status"         a JSON field that must be non-empty; or body_contains = "..."
//
//   [[check]]                        a query and its expected first value
//   kind = "sql"
//   query = "SELECT count(*) FROM ingest_jobs WHERE state = 'failed' AND ..."
//   expect = "0"                     or expect_nonzero = true
//
//   [[check]]                        every object a query names exists in the store
//   kind = "objects"
//   query = "SELECT bucket, object_key FROM attachments"   (or one column and bucket = "...")
//   sample = 0                       0: all; N: an evenly spread sample of N
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pg/target.hpp"
#include "storage/object_store.hpp"

namespace backupctl {

struct CheckSpec {
  std::string name;
  std::string kind;  // http | sql | objects
  std::string url, url_sql;
  int status = 200;
  std::string body_contains, json_nonempty;
  std::string query;
  std::optional<std::string> expect;
  bool expect_nonzero = false;
  std::string bucket = "attachments";
  int sample = 0;
};

// Throws Error(usage) naming the file and the check for anything malformed.
std::vector<CheckSpec> load_checklist(const std::filesystem::path& file);

// Waits until `url` answers with any HTTP status (an app that was just started), up to
// `seconds`; returns the last transport error ("" once it answered).
std::string wait_until_http_answers(const std::string& url, double seconds);

// Where the checks look.
struct CheckTarget {
  PgTarget database;
  ObjectStore* store = nullptr;
  // Where an object of the live system is in `store` (a rehearsal's staging copy differs).
  std::function<std::pair<std::string, std::string>(const std::string&, const std::string&)> place;
  std::string api_url;  // empty: http checks are reported as skipped, not passed
};

struct CheckResult {
  std::string name;
  std::string kind;
  std::string status;  // pass | fail | skip
  std::string detail;
  double seconds = 0;
};

std::vector<CheckResult> run_checks(const std::vector<CheckSpec>& checks, const CheckTarget& target);

std::string checks_table(const std::vector<CheckResult>& results);
bool all_passed(const std::vector<CheckResult>& results);  // no "fail" (skips are not failures)

}  // namespace backupctl
