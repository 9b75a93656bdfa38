#include "s3_fixture.hpp"

#include <regex>

namespace backupctl::test {

namespace {

fs::path rgw_script() {
  return fs::path(BACKUPCTL_SOURCE_DIR) / "tools/rgw-throwaway.sh";
}

}  // namespace

S3Server::S3Server() : m_dir("backupctl-s3") {
  write_file_atomic(m_dir.path() / "aws-empty-config", "");
  // Two tries: a port the script found free can be taken by another test's server a moment later.
  RunResult r;
  std::smatch m;
  const std::regex exports(
      R"(RGW_ENDPOINT=http://127\.0\.0\.1:(\d+) RGW_ACCESS_KEY=(\S+) RGW_SECRET_KEY=(\S+))");
  for (int attempt = 0; attempt < 2; ++attempt) {
    r = run_command({.argv = {rgw_script().string(), "start", (m_dir.path() / "rgw").string()}});
    if (r.status.ok() && std::regex_search(r.out, m, exports)) break;
  }
  if (!r.status.ok() || !std::regex_search(r.out, m, exports)) {
    ADD_FAILURE() << "Ceph RGW did not start (tools/install-deps.sh installs it): " << r.err
                  << r.out;
    return;
  }
  m_port = std::stoi(m[1]);
  m_access_key = m[2];
  m_secret_key = m[3];
}

S3Server::~S3Server() {
  // The data goes with the directory: no clean shutdown to wait for.
  run_command({.argv = {rgw_script().string(), "discard", (m_dir.path() / "rgw").string()}});
}

S3Settings S3Server::settings() const {
  S3Settings s;
  s.endpoint = endpoint();
  s.access_key = m_access_key;
  s.secret_key = m_secret_key;
  return s;
}

EnvList S3Server::env() const {
  return {{"OBJECT_STORAGE", "minio"},
          {"MINIO_ENDPOINT", endpoint()},
          {"MINIO_ACCESS_KEY", m_access_key},
          {"MINIO_SECRET_KEY", m_secret_key},
          {"MINIO_REGION", "us-east-1"}};
}

RunResult S3Server::aws(std::vector<std::string> args) const {
  std::vector<std::string> argv = {"/usr/bin/aws", "--endpoint-url", endpoint()};
  argv.insert(argv.end(), args.begin(), args.end());
  // An empty file of our own, not /dev/null: where /dev/null is not a character device (some
  // CI sandboxes) botocore reads whatever was written to it and fails "Unable to parse config".
  const fs::path empty = m_dir.path() / "aws-empty-config";
  return run_command({.argv = argv,
                      .env = {{"AWS_ACCESS_KEY_ID", m_access_key},
                              {"AWS_SECRET_ACCESS_KEY", m_secret_key},
                              {"AWS_DEFAULT_REGION", "us-east-1"},
                              {"AWS_CONFIG_FILE", empty.string()},
                              {"AWS_SHARED_CREDENTIALS_FILE", empty.string()},
                              {"AWS_PAGER", ""}}});
}

std::string S3Server::access_log() const {
  // Flushed first: Ceph's log thread writes behind.
  run_command(
      {.argv = {"ceph", "--admin-daemon",
                (m_dir.path() / "rgw/run/ceph-client.rgw.gw.asok").string(), "log", "flush"}});
  try {
    return read_file(m_dir.path() / "rgw/log/client.rgw.gw.log");
  } catch (const std::exception&) {
    return "";
  }
}

int S3Server::rejections() const {
  // beast's access log: `... "PUT /bucket/key HTTP/1.1" 403 ...`
  std::string log = access_log();
  if (log.empty()) return -1;
  int n = 0;
  for (std::size_t p = 0; (p = log.find(" HTTP/1.1\" 403 ", p)) != std::string::npos; ++p) ++n;
  return n;
}

void S3Server::kill_server() {
  run_command({.argv = {rgw_script().string(), "kill-rgw", (m_dir.path() / "rgw").string()}});
}

void S3Server::restart_server() {
  kill_server();
  RunResult r =
      run_command({.argv = {rgw_script().string(), "start-rgw", (m_dir.path() / "rgw").string()}});
  EXPECT_TRUE(r.status.ok()) << "radosgw did not come back: " << r.err;
}

}  // namespace backupctl::test
