#include "tar/manifest.hpp"

#include <algorithm>

#include "util/digest.hpp"
#include "util/error.hpp"

namespace backupctl {

using nlohmann::json;

json Manifest::to_json() const {
  json objs = json::array();
  for (const auto& o : objects) {
    objs.push_back({{"bucket", o.bucket},
                    {"key", o.key},
                    {"path", o.path},
                    {"size", o.size},
                    {"etag", o.etag},
                    {"sha256", o.sha256},
                    {"content_type", o.content_type},
                    {"metadata", o.metadata},
                    {"last_modified", o.last_modified}});
  }
  return {{"manifest_version", kVersion}, {"label", label}, {"source", source},
          {"buckets", buckets},           {"objects", objs}};
}

Manifest Manifest::from_json(const json& j) {
  try {
    Manifest m;
    m.label = j.value("label", "");
    m.source = j.value("source", "");
    m.buckets = j.at("buckets").get<std::vector<std::string>>();
    for (const auto& o : j.at("objects")) {
      ManifestObject mo;
      mo.bucket = o.at("bucket").get<std::string>();
      mo.key = o.at("key").get<std::string>();
      mo.path = o.at("path").get<std::string>();
      mo.size = o.at("size").get<std::uint64_t>();
      mo.etag = o.value("etag", "");
      mo.sha256 = o.at("sha256").get<std::string>();
      mo.content_type = o.value("content_type", "");
      if (o.contains("metadata")) mo.metadata = o["metadata"].get<std::map<std::string, std::string>>();
      mo.last_modified = o.value("last_modified", "");
      m.objects.push_back(std::move(mo));
    }
    return m;
  } catch (const json::exception& e) {
    throw Error(ErrorCode::verification, std::string("the archive's manifest is malformed: ") + e.what(),
                "the file is damaged; use another backup");
  }
}

bool safe_relative_key(const std::string& key) {
  if (key.empty() || key.size() > 1024 || key.front() == '/' || key.back() == '/') return false;
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t slash = key.find('/', start);
    std::string_view seg(key.data() + start, (slash == std::string::npos ? key.size() : slash) - start);
    if (seg.empty() || seg == "." || seg == "..") return false;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return std::none_of(key.begin(), key.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f || c == '\\'; });
}

std::string tar_path(const std::string& bucket, const std::string& key) {
  if (safe_relative_key(key)) return bucket + "/" + key;
  return ".backupctl/encoded/" + bucket + "/" + digest_hex(DigestKind::sha256, key);
}

}  // namespace backupctl
