#include "storage/object_store.hpp"

#include "config/config.hpp"
#include "storage/disk/disk_store.hpp"
#include "storage/s3/s3_store.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"

namespace backupctl {

std::unique_ptr<ObjectStore> make_object_store(const Config& config) {
  if (config.object_storage == ObjectStorage::disk) {
    if (config.object_storage_dir.empty()) {
      throw Error(ErrorCode::usage, "OBJECT_STORAGE=disk needs OBJECT_STORAGE_DIR",
                  "set it to the folder that holds the attachments (one folder per bucket)");
    }
    return std::make_unique<DiskStore>(config.object_storage_dir);
  }
  if (config.minio_endpoint.empty()) {
    throw Error(ErrorCode::usage, "OBJECT_STORAGE=minio needs MINIO_ENDPOINT",
                "e.g. MINIO_ENDPOINT=http://minio:9000 (or OBJECT_STORAGE=disk with OBJECT_STORAGE_DIR)");
  }
  if (config.minio_access_key.empty() || config.minio_secret_key.empty()) {
    throw Error(ErrorCode::usage, "MINIO_ACCESS_KEY and MINIO_SECRET_KEY are required for OBJECT_STORAGE=minio",
                "set them in the environment or the env file");
  }
  S3Settings s;
  s.endpoint = config.minio_endpoint;
  s.access_key = config.minio_access_key;
  s.secret_key = config.minio_secret_key;
  s.region = config.minio_region;
  s.ca_file = config.minio_ca_file;
  return std::make_unique<S3Store>(std::move(s));
}

std::string dot_segment(const std::string& key) {
  std::size_t start = 0;
  for (;;) {
    std::size_t end = key.find_first_of("/\\", start);
    std::string seg = key.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (seg == "." || seg == "..") return seg;
    if (end == std::string::npos) return "";
    start = end + 1;
  }
}

std::uint64_t part_size_for(std::uint64_t size) {
  constexpr std::uint64_t kMiB = 1 << 20;
  std::uint64_t part = ObjectStore::kMinPartSize;
  if (size / part >= 9000) part = (size / 9000 / kMiB + 1) * kMiB;
  return part;
}

std::string multipart_etag(std::string_view part_md5s, int count) {
  return digest_hex(DigestKind::md5, part_md5s) + "-" + std::to_string(count);
}

}  // namespace backupctl
