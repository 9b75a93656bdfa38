#include "s3_fixture.hpp"

#include <signal.h>

#include <regex>

#include <nlohmann/json.hpp>

namespace backupctl::test {

namespace {

fs::path source(const std::string& rel) { return fs::path(BACKUPCTL_SOURCE_DIR) / rel; }

// Reads the child's stdout until a line matches `re`; returns the first capture as a number.
int wait_for_port(Child& child, const std::regex& re, const std::string& what) {
  std::string seen;
  char buf[4096];
  while (seen.find('\n') == std::string::npos || !std::regex_search(seen, re)) {
    std::size_t n = child.read_output(buf);
    if (n == 0) break;
    seen.append(buf, n);
    std::smatch m;
    if (std::regex_search(seen, m, re)) return std::stoi(m[1]);
  }
  ADD_FAILURE() << what << " did not start: " << seen << child.stderr_tail();
  return 0;
}

}  // namespace

fs::path rgw_script() { return source("tools/rgw-throwaway.sh"); }

S3Server::S3Server(Backend backend) : m_backend(backend), m_dir("backupctl-s3") {
  if (m_backend == Backend::rgw) {
    // Two tries: a port the script found free can be taken by another test's server a moment later.
    RunResult r;
    std::smatch m;
    const std::regex exports(R"(RGW_ENDPOINT=http://127\.0\.0\.1:(\d+) RGW_ACCESS_KEY=(\S+) RGW_SECRET_KEY=(\S+))");
    for (int attempt = 0; attempt < 2; ++attempt) {
      r = run_command({.argv = {rgw_script().string(), "start", (m_dir.path() / "rgw").string()}});
      if (r.status.ok() && std::regex_search(r.out, m, exports)) break;
    }
    if (!r.status.ok() || !std::regex_search(r.out, m, exports)) {
      ADD_FAILURE() << "Ceph RGW did not start (tools/install-deps.sh installs it): " << r.err << r.out;
      return;
    }
    m_port = m_client_port = std::stoi(m[1]);
    m_access_key = m[2];
    m_secret_key = m[3];
    return;
  }
  if (!fs::exists(source("node_modules/s3rver/bin/s3rver.js"))) {
    ADD_FAILURE() << "node_modules/s3rver is missing: run `npm ci` in " << BACKUPCTL_SOURCE_DIR;
    return;
  }
  start_s3rver();
  if (m_port == 0) return;
  m_proxy.emplace(Child::spawn({.argv = {"node", source("tests/s3/verifying_proxy.js").string(),
                                         std::to_string(m_port), m_access_key, m_secret_key, "us-east-1"},
                                .env = {{"NODE_PATH", source("node_modules").string()}}}));
  m_client_port = wait_for_port(*m_proxy, std::regex(R"(proxy listening on (\d+))"), "the verifying proxy");
}

void S3Server::start_s3rver() {
  std::string port = m_port ? std::to_string(m_port) : "0";
  m_server.emplace(Child::spawn({.argv = {"node", "--openssl-legacy-provider",
                                          source("node_modules/s3rver/bin/s3rver.js").string(), "-d",
                                          m_dir.path().string(), "-a", "127.0.0.1", "-p", port,
                                          "--no-vhost-buckets", "--silent"}}));
  m_port = wait_for_port(*m_server, std::regex(R"(listening on 127\.0\.0\.1:(\d+))"), "s3rver");
}

S3Server::~S3Server() {
  // s3rver and the proxy: the Child guards terminate and reap them. RGW: its daemons, by pid.
  if (m_backend == Backend::rgw) run_command({.argv = {rgw_script().string(), "stop", (m_dir.path() / "rgw").string()}});
}

EnvList S3Server::env() const {
  return {{"OBJECT_STORAGE", "minio"},
          {"MINIO_ENDPOINT", endpoint()},
          {"MINIO_ACCESS_KEY", m_access_key},
          {"MINIO_SECRET_KEY", m_secret_key},
          {"MINIO_REGION", "us-east-1"}};
}

RunResult S3Server::aws(std::vector<std::string> args) const {
  std::vector<std::string> argv = {"/usr/bin/aws", "--endpoint-url", direct_endpoint()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command({.argv = argv,
                      .env = {{"AWS_ACCESS_KEY_ID", m_access_key},
                              {"AWS_SECRET_ACCESS_KEY", m_secret_key},
                              {"AWS_DEFAULT_REGION", "us-east-1"},
                              {"AWS_CONFIG_FILE", "/dev/null"},
                              {"AWS_SHARED_CREDENTIALS_FILE", "/dev/null"},
                              {"AWS_PAGER", ""}}});
}

std::string S3Server::access_log() const {
  if (m_backend != Backend::rgw) return "";
  // Flushed first: Ceph's log thread writes behind.
  run_command({.argv = {"ceph", "--admin-daemon", (m_dir.path() / "rgw/run/ceph-client.rgw.gw.asok").string(),
                        "log", "flush"}});
  try {
    return read_file(m_dir.path() / "rgw/log/client.rgw.gw.log");
  } catch (const std::exception&) {
    return "";
  }
}

int S3Server::rejections() const {
  if (m_backend == Backend::rgw) {
    // beast's access log: `... "PUT /bucket/key HTTP/1.1" 403 ...`
    std::string log = access_log();
    if (log.empty()) return -1;
    int n = 0;
    for (std::size_t p = 0; (p = log.find(" HTTP/1.1\" 403 ", p)) != std::string::npos; ++p) ++n;
    return n;
  }
  RunResult r = run_command({.argv = {"curl", "-s", endpoint() + "/__proxy/rejections"}});
  return r.out.empty() ? -1 : std::stoi(r.out);
}

void S3Server::kill_server() {
  if (m_backend == Backend::rgw) {
    run_command({.argv = {rgw_script().string(), "kill-rgw", (m_dir.path() / "rgw").string()}});
    return;
  }
  if (m_server) {
    m_server->kill(SIGKILL);
    m_server->wait();
    m_server.reset();
  }
}

void S3Server::restart_server() {
  kill_server();
  if (m_backend == Backend::rgw) {
    RunResult r = run_command({.argv = {rgw_script().string(), "start-rgw", (m_dir.path() / "rgw").string()}});
    EXPECT_TRUE(r.status.ok()) << "radosgw did not come back: " << r.err;
    return;
  }
  drop_incomplete_objects();
  start_s3rver();
}

// s3rver writes an object in three files (body, .md5, then metadata.json) without making the PUT
// atomic, so a SIGKILL mid-PUT can leave a half-stored object whose truncated metadata makes every
// listing of the bucket (and HEAD bucket, which it serves as a listing) fail with HTTP 500 for
// ever. A real store (MinIO, S3) never shows a PUT that did not finish; this is the recovery
// s3rver lacks: an object without a whole metadata.json was never stored.
void S3Server::drop_incomplete_objects() {
  const std::string object_suffix = "._S3rver_object";
  std::vector<fs::path> bodies;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(m_dir.path(), ec); it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->path().string().ends_with(object_suffix)) bodies.push_back(it->path());
  }
  for (const fs::path& body : bodies) {
    const std::string base = body.string().substr(0, body.string().size() - object_suffix.size());
    const fs::path metadata = base + "._S3rver_metadata.json";
    std::error_code read_ec;
    if (fs::exists(metadata, read_ec) && nlohmann::json::accept(read_file(metadata))) continue;
    for (const fs::path& f : {body, fs::path(body.string() + ".md5"), metadata}) fs::remove(f, read_ec);
  }
}

}  // namespace backupctl::test
