// An S3Store pointed at a CaptureServer, for tests of what the client sends or how it takes a
// crafted answer: one attempt, so the server's answer is final.
#pragma once

#include "storage/s3/s3_store.hpp"
#include "support/capture_server.hpp"

namespace backupctl::test {

inline S3Settings capture_settings(const CaptureServer& server) {
  S3Settings s;
  s.endpoint = server.url();
  s.access_key = "k";
  s.secret_key = "s";
  s.max_attempts = 1;
  return s;
}

}  // namespace backupctl::test
