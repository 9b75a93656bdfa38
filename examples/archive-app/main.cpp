// A small document-archive app to back up, break and restore: the `api` the plan's checklist
// talks to (health, document list, search, detail, attachment download), a `worker` that
// processes ingest_jobs, and `generate`, which fills it with sample data. It uses the same
// settings as backupctl (PG* / DATABASE_URL, OBJECT_STORAGE, MINIO_*, OBJECT_STORAGE_DIR) and
// backupctl's own libpq and object-store code.
//   archive-app api [--port 8000] [--host 127.0.0.1]
//   archive-app worker [--interval-ms 500]
//   archive-app beat [--interval-ms 1000]
//   archive-app generate [--documents 200] [--failed-jobs 0]
//   archive-app delete-attachments [--count 5]
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include "config/config.hpp"
#include "pg/connection.hpp"
#include "pg/target.hpp"
#include "storage/object_store.hpp"
#include "util/env.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"

using namespace backupctl;
using nlohmann::json;

namespace {

std::atomic<bool> g_stop{false};

// SIGTERM/SIGINT end the api and the worker cleanly: a thread waits for them.
void on_stop(const std::function<void()>& stop) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set, stop] {
    int sig = 0;
    sigwait(&set, &sig);
    g_stop = true;
    stop();
  }).detach();
}

PgConnection db() { return PgConnection::open(PgTarget::from_environment()); }

json rows_to_json(const PgRows& rows, const std::vector<std::string>& names) {
  json out = json::array();
  for (const auto& r : rows) {
    json o;
    for (std::size_t i = 0; i < names.size(); ++i) o[names[i]] = r[i] ? json(*r[i]) : json(nullptr);
    out.push_back(o);
  }
  return out;
}

int run_api(const std::string& host, int port) {
  Config config = Config::from_environment();
  httplib::Server svr;
  auto reply = [](httplib::Response& res, const json& j, int status = 200) {
    res.status = status;
    res.set_content(j.dump(), "application/json");
  };
  auto guarded = [&](auto handler) {
    return [handler, reply](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const std::exception& e) {
        reply(res, {{"error", e.what()}}, 500);
      }
    };
  };
  svr.Get("/api/health", guarded([&](const httplib::Request&, httplib::Response& res) {
    auto conn = db();
    std::string n = conn.scalar("SELECT count(*) FROM documents");
    reply(res, {{"status", "ok"}, {"db", "ok"}, {"documents", std::stoll(n)}});
  }));
  svr.Get("/api/documents", guarded([&](const httplib::Request& req, httplib::Response& res) {
    std::string limit = req.has_param("limit") ? req.get_param_value("limit") : "20";
    auto conn = db();
    auto rows = conn.query("SELECT id, title, status, created_at FROM documents ORDER BY id LIMIT $1::int", {limit});
    reply(res, {{"items", rows_to_json(rows, {"id", "title", "status", "created_at"})},
                {"total", std::stoll(conn.scalar("SELECT count(*) FROM documents"))}});
  }));
  svr.Get("/api/search", guarded([&](const httplib::Request& req, httplib::Response& res) {
    std::string q = req.has_param("q") ? req.get_param_value("q") : "";
    auto conn = db();
    auto rows = conn.query(
        "SELECT id, title FROM documents WHERE to_tsvector('simple', title || ' ' || body) @@ "
        "plainto_tsquery('simple', $1) ORDER BY id LIMIT 50",
        {q});
    reply(res, {{"query", q}, {"items", rows_to_json(rows, {"id", "title"})}});
  }));
  svr.Get(R"(/api/documents/(\d+))", guarded([&](const httplib::Request& req, httplib::Response& res) {
    auto conn = db();
    auto doc = conn.query("SELECT id, title, body, status FROM documents WHERE id = $1::bigint", {req.matches[1]});
    if (doc.empty()) return reply(res, {{"error", "no such document"}}, 404);
    json j = rows_to_json(doc, {"id", "title", "body", "status"})[0];
    j["attachments"] = rows_to_json(
        conn.query("SELECT id, object_key, content_type, size FROM attachments WHERE document_id = $1::bigint ORDER BY id",
                   {req.matches[1]}),
        {"id", "object_key", "content_type", "size"});
    reply(res, j);
  }));
  svr.Get(R"(/api/attachments/(\d+)/download)", guarded([&](const httplib::Request& req, httplib::Response& res) {
    auto conn = db();
    auto a = conn.query("SELECT bucket, object_key, content_type FROM attachments WHERE id = $1::bigint", {req.matches[1]});
    if (a.empty()) return reply(res, {{"error", "no such attachment"}}, 404);
    auto store = make_object_store(config);
    io::StringSink body;
    // OBJECT_TARGET=bucket[/prefix]: the attachments were restored there (`restore objects
    // --target`, a rehearsal's staging copy), each at [prefix/]<bucket>/<key>.
    std::string bucket = *a[0][0], key = *a[0][1];
    if (auto target = env_value("OBJECT_TARGET")) {
      auto slash = target->find('/');
      key = (slash == std::string::npos ? "" : target->substr(slash + 1) + "/") + bucket + "/" + key;
      bucket = target->substr(0, slash);
    }
    try {
      store->get_object(bucket, key, body);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::not_found) return reply(res, {{"error", "attachment file missing"}}, 404);
      throw;
    }
    res.set_content(body.data(), a[0][2]->c_str());
  }));
  on_stop([&] { svr.stop(); });
  if (!svr.bind_to_port(host, port)) {
    std::fprintf(stderr, "archive-app: cannot listen on %s:%d\n", host.c_str(), port);
    return 1;
  }
  std::fprintf(stderr, "archive-app api listening on %s:%d\n", host.c_str(), port);
  svr.listen_after_bind();
  return 0;
}

// Runs `step` on one connection every `interval_ms` until SIGTERM/SIGINT, reconnecting after
// an error (the database restarting, a restore swapping it).
int run_loop(const char* name, int interval_ms, const std::function<void(PgConnection&)>& step) {
  on_stop([] {});
  while (!g_stop) {
    try {
      auto conn = db();
      while (!g_stop) {
        step(conn);
        // Short naps, so a stop request ends the loop within 50 ms.
        for (int slept = 0; slept < interval_ms && !g_stop; slept += 50) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "archive-app %s: %s; retrying\n", name, e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    }
  }
  return 0;
}

int run_worker(int interval_ms) {
  return run_loop("worker", interval_ms, [](PgConnection& conn) {
    auto done = conn.query(
        "UPDATE ingest_jobs SET state = 'done', processed_at = now() WHERE id IN (SELECT id FROM "
        "ingest_jobs WHERE state = 'queued' ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED) RETURNING id");
    if (!done.empty()) std::fprintf(stderr, "archive-app worker: processed %zu job(s)\n", done.size());
  });
}

// The plan's `beat`: queues a job every interval (the worker picks it up), so a running stack
// writes to its database all the time and a restore must stop it first.
int run_beat(int interval_ms) {
  return run_loop("beat", interval_ms,
                  [](PgConnection& conn) { conn.exec("INSERT INTO ingest_jobs (state) VALUES ('queued')"); });
}

int run_generate(int documents, int failed_jobs, const std::string& schema_file) {
  Config config = Config::from_environment();
  auto conn = db();
  conn.exec(read_file(schema_file));
  std::mt19937 rng(42);
  auto store = make_object_store(config);
  if (!store->bucket_exists("attachments")) store->create_bucket("attachments");
  const char* words[] = {"contract", "invoice", "report", "minutes", "policy", "letter", "permit", "survey"};
  long first = std::stol(conn.scalar("SELECT coalesce(max(id), 0) + 1 FROM documents"));
  conn.exec("BEGIN");
  for (int i = 0; i < documents; ++i) {
    long id = first + i;
    std::string kind = words[i % 8];
    std::string title = fmt::format("{} {} {}", kind, id, rng() % 1000);
    std::string body = fmt::format("This {} concerns case {} and was filed by department {}.", kind, id, rng() % 20);
    conn.query("INSERT INTO documents (id, title, body, created_at) VALUES ($1::bigint, $2, $3, now() - $4::int * interval '1 hour')",
               {std::to_string(id), title, body, std::to_string(documents - i)});
    std::string key = fmt::format("documents/{}/{}-{}.pdf", id, kind, id);
    std::string content = fmt::format("%PDF-1.4\n% sample attachment of document {}\n", id);
    content.append(2000 + rng() % 8000, static_cast<char>('a' + rng() % 26));
    MemorySource src(content.data(), content.size());
    store->put_object("attachments", key, src, {"application/pdf", {{"document-id", std::to_string(id)}}});
    conn.query("INSERT INTO attachments (document_id, object_key, content_type, size) VALUES ($1::bigint, $2, 'application/pdf', $3::bigint)",
               {std::to_string(id), key, std::to_string(content.size())});
    conn.query("INSERT INTO ingest_jobs (document_id, state, created_at, processed_at) VALUES ($1::bigint, 'done', now() - interval '2 days', now() - interval '2 days')",
               {std::to_string(id)});
  }
  for (int i = 0; i < failed_jobs; ++i) {
    conn.exec("INSERT INTO ingest_jobs (state, error) VALUES ('failed', 'OCR failed')");
  }
  conn.exec(fmt::format("SELECT setval('documents_id_seq', {})", first + documents));
  conn.exec("COMMIT");
  std::fprintf(stderr, "archive-app: generated %d documents with attachments in %s\n", documents, store->describe().c_str());
  return 0;
}

// For demos: an incident in which attachment files disappear from the store.
int run_delete_attachments(int count) {
  Config config = Config::from_environment();
  auto conn = db();
  auto rows = conn.query("SELECT bucket, object_key FROM attachments ORDER BY id LIMIT $1::int", {std::to_string(count)});
  auto store = make_object_store(config);
  std::map<std::string, std::vector<std::string>> keys;
  for (const auto& r : rows) keys[*r[0]].push_back(*r[1]);
  for (const auto& [bucket, list] : keys) store->delete_objects(bucket, list);
  std::fprintf(stderr, "archive-app: deleted %zu attachment files from the store\n", rows.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"archive-app: the sample document archive"};
  app.require_subcommand(1);
  int port = 8000, interval = 500, documents = 200, failed = 0;
  std::string schema = "examples/archive-app/schema.sql", host = "127.0.0.1";
  auto* api = app.add_subcommand("api", "serve the HTTP API");
  api->add_option("--port", port);
  api->add_option("--host", host, "address to listen on (0.0.0.0 in a container)");
  auto* worker = app.add_subcommand("worker", "process queued ingest_jobs");
  worker->add_option("--interval-ms", interval);
  int beat_interval = 1000;
  auto* beat = app.add_subcommand("beat", "queue an ingest job every interval");
  beat->add_option("--interval-ms", beat_interval);
  auto* gen = app.add_subcommand("generate", "create the schema and sample data");
  gen->add_option("--documents", documents);
  gen->add_option("--failed-jobs", failed);
  gen->add_option("--schema", schema);
  int count = 5;
  auto* del = app.add_subcommand("delete-attachments", "delete attachment files from the store (an incident)");
  del->add_option("--count", count);
  CLI11_PARSE(app, argc, argv);
  try {
    if (api->parsed()) return run_api(host, port);
    if (worker->parsed()) return run_worker(interval);
    if (beat->parsed()) return run_beat(beat_interval);
    if (gen->parsed()) return run_generate(documents, failed, schema);
    if (del->parsed()) return run_delete_attachments(count);
  } catch (const Error& e) {
    std::fprintf(stderr, "archive-app: %s\n", e.what());
    return 1;
  }
  return 0;
}
