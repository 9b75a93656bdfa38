// A real S3 server for tests: Ceph's RADOS Gateway (tools/rgw-throwaway.sh: one monitor, one
// memstore OSD, radosgw on a free loopback port; ~2 s to start). It checks SigV4 as AWS and MinIO
// do (a wrong secret is 403 SignatureDoesNotMatch), keeps keys byte for byte (dot segments too),
// answers errors with an empty <Message>. Debian's awscli is the independent client.
// (s3rver, the second implementation of earlier suites, is gone: it checked no signature, resolved
// ".." in keys and needed a verifying proxy; no test needs anything RGW cannot do.)
#pragma once

#include <string>

#include "fixture.hpp"
#include "storage/s3/s3_store.hpp"

namespace backupctl::test {

class S3Server {
 public:
  S3Server();
  ~S3Server();
  S3Server(const S3Server&) = delete;
  S3Server& operator=(const S3Server&) = delete;

  const std::string& access_key() const { return m_access_key; }
  const std::string& secret_key() const { return m_secret_key; }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(m_port); }
  int port() const { return m_port; }

  // backupctl's S3Store settings for this server (endpoint and keys), for tests that talk to it
  // in-process.
  S3Settings settings() const;

  // OBJECT_STORAGE=minio and the MINIO_* variables for backupctl.
  EnvList env() const;

  // Runs Debian's /usr/bin/aws s3api/s3 against the server; ASSERTs nothing, returns the result.
  RunResult aws(std::vector<std::string> args) const;

  // RGW's log with beast's access lines (one per request: method, path, status, User-Agent).
  std::string access_log() const;

  // Requests the server refused with 403 so far (a bad signature or key), from the access log.
  int rejections() const;

  // Kills the server (SIGKILL), for fault tests.
  void kill_server();
  // Starts it again on the same port, with the objects it had.
  void restart_server();

 private:
  TempDir m_dir;
  std::string m_access_key, m_secret_key;
  int m_port = 0;
};

}  // namespace backupctl::test
