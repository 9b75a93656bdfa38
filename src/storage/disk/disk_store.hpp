// ObjectStore over a directory (OBJECT_STORAGE_DIR): a bucket is a first-level folder, a key the
// path below it. Writes go to a temporary file renamed into place. No content types or user
// metadata (a plain folder has none); symbolic links are skipped, never followed.
#pragma once

#include <filesystem>

#include "storage/object_store.hpp"

namespace backupctl {

class DiskStore : public ObjectStore {
 public:
  explicit DiskStore(std::filesystem::path root) : m_root(std::move(root)) {}

  std::string label() const override { return "disk"; }
  std::string describe() const override { return m_root.string(); }

  std::vector<std::string> list_buckets() override;
  bool bucket_exists(const std::string& bucket) override;
  void create_bucket(const std::string& bucket) override;
  void delete_bucket(const std::string& bucket) override;
  void list_objects(const std::string& bucket, const std::string& prefix,
                    const std::function<void(const ObjectEntry&)>& each) override;
  ObjectInfo get_object(const std::string& bucket, const std::string& key, io::Sink& sink) override;
  ObjectInfo head_object(const std::string& bucket, const std::string& key) override;
  void put_object(const std::string& bucket, const std::string& key, RewindableSource& body,
                  const PutOptions& options) override;
  std::unique_ptr<MultipartUpload> start_multipart(const std::string& bucket,
                                                   const std::string& key,
                                                   const PutOptions& options) override;
  void delete_objects(const std::string& bucket, const std::vector<std::string>& keys) override;

  // The file for bucket/key; Error(usage) for a key that is not a safe relative path.
  std::filesystem::path path_of(const std::string& bucket, const std::string& key) const;

 private:
  std::filesystem::path m_root;
};

}  // namespace backupctl
