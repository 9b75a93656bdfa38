// Where attachments live: an S3-compatible server (MinIO, AWS S3, ...) or a directory (the "disk
// fallback", a bucket being a first-level folder). One interface, one shared test suite
// (tests/integration/object_store_test.cpp) that every backend passes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/pipeline.hpp"

namespace backupctl {

struct Config;

// One object as a listing shows it.
struct ObjectEntry {
  std::string key;
  std::uint64_t size = 0;
  std::string etag;           // without quotes; "" when the backend has none (disk)
  std::string last_modified;  // ISO-8601 as the backend reports it
};

// One object's properties, from a GET or HEAD.
struct ObjectInfo {
  std::uint64_t size = 0;
  std::string etag;
  std::string last_modified;
  std::string content_type;
  std::map<std::string, std::string> metadata;  // user metadata (x-amz-meta-*), lowercase names
};

struct PutOptions {
  std::string content_type;
  std::map<std::string, std::string> metadata;
  // The body's digests when the caller knows them already (saves a pass over the bytes): the
  // server checks the body against both, so a sha256 from a backup's manifest proves the upload.
  std::string sha256_hex;
  std::string md5_base64;
  // S3 only (off-site copies): the storage class, and an Object Lock (COMPLIANCE) until this
  // ISO-8601 UTC time ("2027-01-01T00:00:00Z").
  std::string storage_class;
  std::string lock_until;
};

// A body a put can read more than once: a retry rewinds it and sends it again.
class RewindableSource : public io::Source {
 public:
  virtual void rewind() = 0;
  virtual std::uint64_t size() const = 0;
};

// Bytes in memory (a small object, or one part of a large one). Does not own them.
class MemorySource : public RewindableSource {
 public:
  MemorySource(const char* data, std::size_t size) : m_data(data), m_size(size) {}
  std::size_t read(std::span<char> buf) override;
  void rewind() override { m_pos = 0; }
  std::uint64_t size() const override { return m_size; }
  const char* data() const { return m_data; }

 private:
  const char* m_data;
  std::size_t m_size;
  std::size_t m_pos = 0;
};

// A large object uploaded in parts (S3 multipart). Parts are numbered from 1, at least
// kMinPartSize each except the last. Destroyed before complete(), it aborts, so no orphan parts
// remain on the server.
class MultipartUpload {
 public:
  virtual ~MultipartUpload() = default;
  // `md5_base64`, when given, is the part's Content-MD5 (the server checks the part against it and
  // the part is not hashed again here). Parts may be uploaded from several threads at once, in any
  // order, where the store says so (parallel_parts()).
  virtual void upload_part(int number, RewindableSource& part, const std::string& md5_base64 = "") = 0;
  virtual bool parallel_parts() const { return false; }
  virtual void complete() = 0;
  virtual void abort() = 0;
  // The server's id of the upload ("" when there is none): the journal records it, so the repair
  // of an interrupted restore can abort an upload its process left open.
  virtual std::string upload_id() const { return ""; }
  // Leaves the upload open on the server when destroyed (instead of aborting it): an off-site
  // copy cut short resumes from its parts on the next push.
  virtual void keep_open() {}
};

// S3's multipart limits (AWS's, which MinIO and RGW keep): at most 10,000 parts, objects up to
// 5 TiB, parts up to 5 GiB.
inline constexpr std::uint64_t kMaxParts = 10000;
inline constexpr std::uint64_t kMaxObjectSize = std::uint64_t{5} << 40;

// The one part-size rule of every multipart upload (restored attachments, off-site copies): 8 MiB
// (ObjectStore::kMinPartSize), and past 70 GiB whole MiB so the upload takes at most 9,000 parts —
// a tenth under S3's limit. A resumed off-site copy finds its parts by this size, so it must not
// change for sizes already uploaded.
std::uint64_t part_size_for(std::uint64_t size);

// The ETag S3 gives an object uploaded in `count` parts whose raw MD5s, one after another, are
// `part_md5s`: the MD5 of those, "-", the count.
std::string multipart_etag(std::string_view part_md5s, int count);

class ObjectStore {
 public:
  static constexpr std::uint64_t kMinPartSize = 8u << 20;  // S3 needs >= 5 MiB; 8 MiB parts

  virtual ~ObjectStore() = default;

  // "minio" or "disk": the label in backup file names.
  virtual std::string label() const = 0;
  // The endpoint or directory, for messages.
  virtual std::string describe() const = 0;

  virtual std::vector<std::string> list_buckets() = 0;
  virtual bool bucket_exists(const std::string& bucket) = 0;
  virtual void create_bucket(const std::string& bucket) = 0;
  // Removes an empty bucket.
  virtual void delete_bucket(const std::string& bucket) = 0;

  // Every object under `prefix` in key order (byte order of the UTF-8 keys).
  virtual void list_objects(const std::string& bucket, const std::string& prefix,
                            const std::function<void(const ObjectEntry&)>& each) = 0;

  // Streams the object's bytes into `sink` (a dropped connection resumes where it stopped).
  virtual ObjectInfo get_object(const std::string& bucket, const std::string& key,
                                io::Sink& sink) = 0;
  // Throws Error(not_found) when missing.
  virtual ObjectInfo head_object(const std::string& bucket, const std::string& key) = 0;

  virtual void put_object(const std::string& bucket, const std::string& key,
                          RewindableSource& body, const PutOptions& options) = 0;
  virtual std::unique_ptr<MultipartUpload> start_multipart(const std::string& bucket,
                                                           const std::string& key,
                                                           const PutOptions& options) = 0;

  virtual void delete_objects(const std::string& bucket, const std::vector<std::string>& keys) = 0;

  // Aborts a multipart upload by its id (the repair of a run that died with one open). Missing is
  // fine. Stores without multipart uploads do nothing.
  virtual void abort_multipart(const std::string& bucket, const std::string& key, const std::string& upload_id) {
    (void)bucket, (void)key, (void)upload_id;
  }
};

// The '.' or '..' segment of an object key ('/' or '\\' apart: servers on Windows split on both),
// or "". S3 and MinIO take keys byte for byte (MinIO refuses such names), but a server that
// resolves dot segments in the request path (s3rver; nginx in front of MinIO whose proxy_pass
// carries a URI) would write such a key elsewhere, even into another bucket; encoding cannot
// help (those decode %2E first). So no such key is ever sent (command/restore_objects).
std::string dot_segment(const std::string& key);

// The store OBJECT_STORAGE selects: minio (MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY,
// MINIO_REGION, MINIO_CA_FILE) or disk (OBJECT_STORAGE_DIR).
std::unique_ptr<ObjectStore> make_object_store(const Config& config);

}  // namespace backupctl
