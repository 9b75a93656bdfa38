// A real S3 server for tests.
//   Backend::rgw (the default): Ceph's RADOS Gateway (tools/rgw-throwaway.sh: one monitor, one
//     memstore OSD, radosgw on a free loopback port; ~2 s to start). It checks SigV4 as AWS and
//     MinIO do (a wrong secret is 403 SignatureDoesNotMatch), keeps keys byte for byte, answers
//     errors with an empty <Message>.
//   Backend::s3rver: s3rver (npm, pinned in package-lock.json) behind tests/s3/verifying_proxy.js,
//     which re-signs every request with an independent SigV4 implementation (aws4). Kept as a
//     second S3 implementation for the shared ObjectStore suite (a client bug that RGW tolerates
//     and s3rver does not, or the other way round, then still shows); s3rver itself checks no
//     signature and resolves ".." in keys, so the proxy is what checks it.
// Debian's awscli is the independent client for both.
#pragma once

#include <optional>
#include <string>

#include "fixture.hpp"

namespace backupctl::test {

class S3Server {
 public:
  enum class Backend { rgw, s3rver };

  explicit S3Server(Backend backend = Backend::rgw);
  ~S3Server();
  S3Server(const S3Server&) = delete;
  S3Server& operator=(const S3Server&) = delete;

  Backend backend() const { return m_backend; }
  const std::string& access_key() const { return m_access_key; }
  const std::string& secret_key() const { return m_secret_key; }

  // What backupctl uses (for s3rver: the verifying proxy).
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(m_client_port); }
  // The server itself, for awscli (which signs with its own code anyway).
  std::string direct_endpoint() const { return "http://127.0.0.1:" + std::to_string(m_port); }

  // OBJECT_STORAGE=minio and the MINIO_* variables for backupctl.
  EnvList env() const;

  // Runs Debian's /usr/bin/aws s3api/s3 against the server; ASSERTs nothing, returns the result.
  RunResult aws(std::vector<std::string> args) const;

  // RGW's log with beast's access lines (one per request: method, path, status, User-Agent); ""
  // for s3rver.
  std::string access_log() const;

  // Requests the server refused with 403 so far (a bad signature or key): RGW's access log, or
  // the proxy's count.
  int rejections() const;

  // Kills the server (SIGKILL), for fault tests.
  void kill_server();
  // Starts it again on the same port, with the objects it had.
  void restart_server();

 private:
  void start_s3rver();
  void drop_incomplete_objects();
  Backend m_backend;
  TempDir m_dir;
  std::string m_access_key = "S3RVER", m_secret_key = "S3RVER";
  std::optional<Child> m_server;
  std::optional<Child> m_proxy;
  int m_port = 0;
  int m_client_port = 0;
};

}  // namespace backupctl::test
