// A real S3 server for tests: s3rver (npm, pinned in package-lock.json) on a free loopback port,
// behind tests/s3/verifying_proxy.js, which checks every request's SigV4 signature with an
// independent implementation (aws4), so a wrong signature fails the tests although s3rver itself
// accepts anything. Debian's awscli is the independent client.
#pragma once

#include <optional>
#include <string>

#include "fixture.hpp"

namespace backupctl::test {

class S3Server {
 public:
  static constexpr const char* kAccessKey = "S3RVER";
  static constexpr const char* kSecretKey = "S3RVER";

  S3Server();
  ~S3Server();

  // The proxy's URL, what backupctl uses.
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(m_proxy_port); }
  // s3rver itself (for awscli, which signs with its own code anyway).
  std::string direct_endpoint() const { return "http://127.0.0.1:" + std::to_string(m_port); }

  // OBJECT_STORAGE=minio and the MINIO_* variables for backupctl.
  EnvList env() const;

  // Runs Debian's /usr/bin/aws s3api/s3 against the server; ASSERTs nothing, returns the result.
  RunResult aws(std::vector<std::string> args) const;

  // Where s3rver keeps its files (objects are <bucket>/<key>._S3rver_object).
  const fs::path& data_dir() const { return m_dir.path(); }

  // Requests the proxy refused for a bad signature so far.
  int rejections() const;

  // Kills s3rver (SIGKILL), for fault tests; the proxy then answers 502.
  void kill_server();
  // Starts s3rver again on the same port and data directory, without the objects whose PUT the
  // kill interrupted (see drop_incomplete_objects()).
  void restart_server();

 private:
  void start_server();
  void drop_incomplete_objects();
  TempDir m_dir;
  std::optional<Child> m_server;
  std::optional<Child> m_proxy;
  int m_port = 0;
  int m_proxy_port = 0;
};

}  // namespace backupctl::test
