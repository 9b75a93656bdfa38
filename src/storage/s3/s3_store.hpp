// ObjectStore over the S3 API with libcurl: path-style URLs, AWS Signature V4 (CURLOPT_AWS_SIGV4,
// checked against AWS's published test vectors), ListObjectsV2 with pagination, streaming GET (a
// dropped connection resumes with a Range request), PUT with Content-MD5 and the payload's sha256
// (so the server verifies what it stores), multipart uploads aborted on failure, and retries with
// backoff on 5xx, timeouts and dropped connections, never on 4xx.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "storage/object_store.hpp"

namespace backupctl {

struct S3Settings {
  std::string endpoint;    // "http://127.0.0.1:9000" (a missing scheme means http)
  std::string access_key;
  std::string secret_key;  // secret: never logged
  std::string region = "us-east-1";
  std::string ca_file;     // a private CA bundle, for TLS with a self-signed MinIO
  // How errors name the settings these values come from: the attachments' (MINIO_*) by default,
  // the off-site copy's (BACKUP_REMOTE_*) for the remote, so a hint points at the right one.
  struct SettingNames {
    std::string endpoint = "MINIO_ENDPOINT";
    std::string access_key = "MINIO_ACCESS_KEY";
    std::string secret_key = "MINIO_SECRET_KEY";
    std::string region = "MINIO_REGION";
    std::string bucket = "MINIO_BUCKETS";  // where the bucket's name comes from
  } names;
  int max_attempts = 5;
  std::uint64_t max_send_speed = 0;  // bytes/s per transfer (curl's limit); 0: none
  // Tests only: sign with this X-Amz-Date instead of the clock ("20150830T123600Z"), and connect
  // elsewhere than the URL's host (CURLOPT_CONNECT_TO "host:port:127.0.0.1:port").
  std::string fixed_amz_date;
  std::string connect_to;
};

class S3Store : public ObjectStore {
 public:
  explicit S3Store(S3Settings settings);
  ~S3Store() override;

  std::string label() const override { return "minio"; }
  std::string describe() const override { return m_settings.endpoint; }
  const S3Settings& settings() const { return m_settings; }

  std::vector<std::string> list_buckets() override;
  bool bucket_exists(const std::string& bucket) override;
  void create_bucket(const std::string& bucket) override;
  void delete_bucket(const std::string& bucket) override;
  void list_objects(const std::string& bucket, const std::string& prefix,
                    const std::function<void(const ObjectEntry&)>& each) override;
  ObjectInfo get_object(const std::string& bucket, const std::string& key, io::Sink& sink) override;
  ObjectInfo head_object(const std::string& bucket, const std::string& key) override;
  // Bytes [first, last] of the object into `sink` (a dropped connection resumes within the range).
  // With `if_match` (an ETag), an object replaced since is refused (412) rather than mixed in.
  // A server that answers the whole object instead of the range is an error, caught before the
  // sink sees a byte.
  void get_range(const std::string& bucket, const std::string& key, std::uint64_t first, std::uint64_t last,
                 io::Sink& sink, const std::string& if_match = {});
  void put_object(const std::string& bucket, const std::string& key, RewindableSource& body,
                  const PutOptions& options) override;
  std::unique_ptr<MultipartUpload> start_multipart(const std::string& bucket,
                                                   const std::string& key,
                                                   const PutOptions& options) override;
  void delete_objects(const std::string& bucket, const std::vector<std::string>& keys) override;
  void abort_multipart(const std::string& bucket, const std::string& key, const std::string& upload_id) override;

  // Resuming an upload an earlier run left open (off-site copies): the id of the newest open
  // multipart upload of exactly `key`, if any; its parts (number, ETag, size); and the upload
  // taken up again with those parts already in it.
  struct Part {
    int number = 0;
    std::string etag;
    std::uint64_t size = 0;
  };
  std::optional<std::string> open_upload(const std::string& bucket, const std::string& key);
  struct OpenUpload {
    std::string key;
    std::string id;
    std::string initiated;  // ISO 8601, as the server says ("2026-12-02T07:33:02.000Z")
  };
  // Every open multipart upload of a key under `prefix`, all pages.
  std::vector<OpenUpload> open_uploads(const std::string& bucket, const std::string& prefix);
  std::vector<Part> list_parts(const std::string& bucket, const std::string& key, const std::string& upload_id);
  std::unique_ptr<MultipartUpload> resume_multipart(const std::string& bucket, const std::string& key,
                                                    const std::string& upload_id, const std::vector<Part>& parts);

  // One HTTP exchange, exposed for the multipart upload and for tests.
  struct Request {
    std::string method = "GET";
    std::string bucket;  // "" for the service (ListBuckets)
    std::string key;
    std::vector<std::pair<std::string, std::string>> query;  // sorted and encoded when sent
    std::vector<std::string> headers;                        // "Name: value"
    RewindableSource* body = nullptr;
    std::string payload_sha256;  // hex; empty: the hash of an empty body
    io::Sink* sink = nullptr;    // a 2xx response body goes here (else into Response::body)
    std::optional<std::pair<std::uint64_t, std::uint64_t>> range;  // GET bytes first..last (inclusive)
  };
  struct Response {
    long status = 0;
    std::map<std::string, std::string> headers;  // lowercase names
    std::string body;
  };
  // Sends with retries; throws Error on failure (4xx/5xx with the S3 error code and message).
  Response send(Request& request, const std::string& what);
  std::string forbidden_hint(const std::string& code, const Response& response) const;

  // The URL of a bucket/key with its query, as signed: each key segment percent-encoded
  // (RFC 3986, uppercase hex), '/' kept, query sorted by name. Exposed for tests.
  std::string url(const std::string& bucket, const std::string& key,
                  const std::vector<std::pair<std::string, std::string>>& query) const;

 private:
  // A 3xx/4xx answer as an Error naming what to fix (s3_transfer.cpp).
  [[noreturn]] void refuse(Request& request, const Response& response, const std::string& what);
  class Handles;
  S3Settings m_settings;
  std::unique_ptr<Handles> m_handles;
};

// Base64 of the MD5 of `data`, as Content-MD5 wants it.
std::string md5_base64_of(std::string_view data);

// RFC 3986 percent-encoding; '/' kept when keep_slash.
std::string uri_encode(std::string_view text, bool keep_slash);

}  // namespace backupctl
