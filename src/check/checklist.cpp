#include "check/checklist.hpp"

#include <curl/curl.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>
#include <toml++/toml.h>

#include "pg/connection.hpp"
#include "util/error.hpp"
#include "util/parallel.hpp"
#include "util/signals.hpp"

namespace backupctl {

namespace {

// ${VAR} from the environment; API_URL has a default.
std::string interpolate(const std::string& text, const std::string& api_url) {
  static const std::regex var(R"(\$\{([A-Za-z_][A-Za-z0-9_]*)\})");
  std::string out;
  auto begin = std::sregex_iterator(text.begin(), text.end(), var);
  std::size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    out += text.substr(last, it->position() - last);
    std::string name = (*it)[1];
    if (name == "API_URL") {
      out += api_url;
    } else if (const char* v = std::getenv(name.c_str())) {
      out += v;
    }
    last = it->position() + it->length();
  }
  return out + text.substr(last);
}

struct HttpReply {
  long status = 0;
  std::string body;
  std::string error;
};

HttpReply http_get(const std::string& url) {
  HttpReply r;
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 15L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* u) {
    static_cast<std::string*>(u)->append(d, s * n);
    return s * n;
  });
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) r.error = curl_easy_strerror(rc);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_cleanup(c);
  return r;
}

}  // namespace

std::string wait_until_http_answers(const std::string& url, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    HttpReply r = http_get(url);
    if (r.status > 0) return "";
    if (std::chrono::steady_clock::now() >= deadline) return r.error.empty() ? "no answer" : r.error;
    check_interrupted();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

namespace {

void run_http(const CheckSpec& spec, const CheckTarget& target, CheckResult& result) {
  if (target.api_url.empty()) {
    result.status = "skip";
    result.detail = "no API to ask (set STAGING_API_URL for rehearsals)";
    return;
  }
  std::string url = interpolate(spec.url, target.api_url);
  if (!spec.url_sql.empty()) {
    PgConnection conn = PgConnection::open(target.database);
    url = target.api_url + conn.scalar(spec.url_sql);
  }
  HttpReply r = http_get(url);
  if (!r.error.empty()) {
    result.status = "fail";
    result.detail = url + ": " + r.error;
    return;
  }
  if (r.status != spec.status) {
    result.status = "fail";
    result.detail = fmt::format("{}: HTTP {} (expected {})", url, r.status, spec.status);
    return;
  }
  if (!spec.body_contains.empty() && r.body.find(spec.body_contains) == std::string::npos) {
    result.status = "fail";
    result.detail = fmt::format("{}: the body lacks \"{}\"", url, spec.body_contains);
    return;
  }
  if (!spec.json_nonempty.empty()) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    bool ok = !j.is_discarded() && j.is_object() && j.contains(spec.json_nonempty) &&
              !j[spec.json_nonempty].is_null() &&
              !(j[spec.json_nonempty].is_array() && j[spec.json_nonempty].empty()) &&
              !(j[spec.json_nonempty].is_string() && j[spec.json_nonempty].get<std::string>().empty());
    if (!ok) {
      result.status = "fail";
      result.detail = fmt::format("{}: \"{}\" is missing or empty", url, spec.json_nonempty);
      return;
    }
  }
  result.status = "pass";
  result.detail = fmt::format("{}: HTTP {}", url, r.status);
}

void run_sql(const CheckSpec& spec, const CheckTarget& target, CheckResult& result) {
  PgConnection conn = PgConnection::open(target.database);
  PgRows rows = conn.query(spec.query);
  std::string value = rows.empty() || rows[0].empty() ? "(no rows)" : rows[0][0].value_or("NULL");
  bool ok = spec.expect ? value == *spec.expect : (spec.expect_nonzero ? (value != "0" && value != "(no rows)" && value != "NULL") : true);
  result.status = ok ? "pass" : "fail";
  result.detail = spec.expect ? fmt::format("got {}, expected {}", value, *spec.expect)
                              : fmt::format("got {}{}", value, spec.expect_nonzero ? ", expected non-zero" : "");
}

void run_objects(const CheckSpec& spec, const CheckTarget& target, CheckResult& result) {
  if (!target.store) {
    result.status = "fail";
    result.detail = "no object store configured (OBJECT_STORAGE, MINIO_* or OBJECT_STORAGE_DIR)";
    return;
  }
  PgConnection conn = PgConnection::open(target.database);
  PgRows rows = conn.query(spec.query);
  std::vector<std::pair<std::string, std::string>> refs;
  for (const auto& r : rows) {
    if (r.size() >= 2) {
      refs.emplace_back(r[0].value_or(""), r[1].value_or(""));
    } else if (!r.empty()) {
      refs.emplace_back(spec.bucket, r[0].value_or(""));
    }
  }
  std::vector<std::pair<std::string, std::string>> chosen;
  if (spec.sample > 0 && refs.size() > static_cast<std::size_t>(spec.sample)) {
    double step = static_cast<double>(refs.size()) / spec.sample;
    for (int i = 0; i < spec.sample; ++i) chosen.push_back(refs[static_cast<std::size_t>(i * step)]);
  } else {
    chosen = refs;
  }
  std::mutex mutex;
  std::vector<std::string> missing;
  parallel_for(chosen.size(), 8, [&](std::size_t i) {
    auto [bucket, key] = target.place ? target.place(chosen[i].first, chosen[i].second) : chosen[i];
    try {
      target.store->head_object(bucket, key);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::not_found) throw;
      std::lock_guard<std::mutex> lock(mutex);
      missing.push_back(chosen[i].first + "/" + chosen[i].second);
    }
  });
  std::sort(missing.begin(), missing.end());
  result.status = missing.empty() ? "pass" : "fail";
  result.detail = missing.empty() ? fmt::format("{} of {} referenced objects checked, all present", chosen.size(), refs.size())
                                  : fmt::format("{} of {} checked objects missing, first: {}", missing.size(), chosen.size(), missing.front());
}

}  // namespace

std::vector<CheckSpec> load_checklist(const std::filesystem::path& file) {
  toml::table doc;
  try {
    doc = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    throw Error(ErrorCode::usage,
                fmt::format("{}:{}: {}", file.string(), e.source().begin.line, std::string(e.description())),
                "the checklist is TOML: [[check]] tables with name, kind and the kind's fields");
  }
  std::vector<CheckSpec> out;
  const toml::array* checks = doc["check"].as_array();
  if (!checks || checks->empty()) {
    throw Error(ErrorCode::usage, file.string() + " has no [[check]] entries", "see README.md for the format");
  }
  int n = 0;
  for (const auto& node : *checks) {
    ++n;
    const toml::table* t = node.as_table();
    auto bad = [&](const std::string& why) {
      return Error(ErrorCode::usage, fmt::format("{}: check #{}: {}", file.string(), n, why),
                   "kinds: http (url or url_sql), sql (query, expect or expect_nonzero), objects (query)");
    };
    if (!t) throw bad("not a table");
    CheckSpec s;
    s.name = (*t)["name"].value_or(fmt::format("check {}", n));
    s.kind = (*t)["kind"].value_or(std::string());
    s.url = (*t)["url"].value_or(std::string());
    s.url_sql = (*t)["url_sql"].value_or(std::string());
    s.status = (*t)["status"].value_or(200);
    s.body_contains = (*t)["body_contains"].value_or(std::string());
    s.json_nonempty = (*t)["json_nonempty"].value_or(std::string());
    s.query = (*t)["query"].value_or(std::string());
    if (auto e = (*t)["expect"].value<std::string>()) s.expect = *e;
    if (auto e = (*t)["expect"].value<int64_t>()) s.expect = std::to_string(*e);
    s.expect_nonzero = (*t)["expect_nonzero"].value_or(false);
    s.bucket = (*t)["bucket"].value_or(std::string("attachments"));
    s.sample = (*t)["sample"].value_or(0);
    if (s.kind == "http") {
      if (s.url.empty() && s.url_sql.empty()) throw bad("an http check needs url or url_sql");
    } else if (s.kind == "sql" || s.kind == "objects") {
      if (s.query.empty()) throw bad("a " + s.kind + " check needs a query");
    } else {
      throw bad("unknown kind '" + s.kind + "'");
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<CheckResult> run_checks(const std::vector<CheckSpec>& checks, const CheckTarget& target) {
  std::vector<CheckResult> results;
  for (const auto& spec : checks) {
    CheckResult r{spec.name, spec.kind, "fail", "", 0};
    auto t0 = std::chrono::steady_clock::now();
    try {
      if (spec.kind == "http") {
        run_http(spec, target, r);
      } else if (spec.kind == "sql") {
        run_sql(spec, target, r);
      } else {
        run_objects(spec, target, r);
      }
    } catch (const std::exception& e) {
      r.status = "fail";
      r.detail = e.what();
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    results.push_back(std::move(r));
  }
  return results;
}

std::string checks_table(const std::vector<CheckResult>& results) {
  std::size_t w = 5;
  for (const auto& r : results) w = std::max(w, r.name.size());
  std::string out = fmt::format("{:<6} {:<{}}  {:<8} {}\n", "RESULT", "CHECK", w, "KIND", "DETAIL");
  for (const auto& r : results) {
    out += fmt::format("{:<6} {:<{}}  {:<8} {}\n", r.status == "pass" ? "PASS" : (r.status == "skip" ? "SKIP" : "FAIL"),
                       r.name, w, r.kind, r.detail);
  }
  return out;
}

bool all_passed(const std::vector<CheckResult>& results) {
  return std::none_of(results.begin(), results.end(), [](const CheckResult& r) { return r.status == "fail"; });
}

}  // namespace backupctl
