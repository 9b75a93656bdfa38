// Planning an objects restore: the check of the tar, where each object goes, what is created and
// (--mode exact) deleted. Nothing is changed here; restore_objects.cpp runs the plan.
#include "command/restore_objects.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <set>

#include "catalog/catalog.hpp"
#include "util/error.hpp"
#include "util/format.hpp"
#include "util/json.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

// A bucket name that cannot turn into a path or another bucket: one segment, no control bytes.
bool plain_bucket_name(const std::string& b) {
  if (b.empty() || b.size() > 255 || b == "." || b == "..") return false;
  for (unsigned char c : b) {
    if (c == '/' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// Why a folder cannot hold `key` as a file path ("" when it can): the disk store maps each '/'
// segment to a folder, so empty, "." and ".." segments (other than a trailing '/' marking a
// folder) have no place there.
std::string folder_problem(const std::string& key) {
  if (key.empty()) return "an empty key";
  if (key.find('\0') != std::string::npos) return "a NUL byte";
  std::size_t start = 0;
  while (start <= key.size()) {
    std::size_t slash = key.find('/', start);
    std::string seg = key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (slash == std::string::npos && seg.empty() && start > 0) break;  // "dir/": a folder marker
    if (seg.empty()) return start == 0 ? "a leading '/'" : "an empty segment ('//')";
    if (seg == "." || seg == "..") return "a '" + seg + "' segment";
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return "";
}

// Object keys are data, never paths: every placement is checked before anything is written. Bucket
// names must be plain names; no key may have a '.' or '..' segment (dot_segment); a folder target
// must be able to hold every key as a file (no empty segments, and no key that is also the folder
// of another: "a" and "a/b").
void check_placements(const ObjectStore& store, const ObjectsPlan& plan) {
  auto refuse = [&](const std::string& what, const std::string& hint) {
    throw Error(ErrorCode::usage, "cannot restore " + plan.file.filename().string() + " into " + plan.target + ": " + what,
                hint + "; nothing was changed");
  };
  for (const auto& b : plan.scan.manifest.buckets) {
    if (!plain_bucket_name(b)) refuse("the backup names a bucket \"" + b + "\"", "the manifest is damaged or forged");
  }
  for (const auto& o : plan.scan.manifest.objects) {
    if (!plain_bucket_name(o.bucket)) refuse("the backup names a bucket \"" + o.bucket + "\"", "the manifest is damaged or forged");
  }
  if (store.label() != "disk") {
    std::size_t climbing = 0;
    std::string first_climbing;
    for (const auto& o : plan.scan.manifest.objects) {
      if (std::string seg = dot_segment(o.key); !seg.empty() && climbing++ == 0) first_climbing = o.bucket + "/" + o.key;
    }
    if (climbing > 0) {
      refuse(fmt::format("{} of its keys have a '.' or '..' segment, first: {}; a server that resolves them would "
                         "write outside {}",
                         climbing, first_climbing, plan.target),
             "such keys are never sent (MinIO refuses them anyway); to have them, extract the archive with tar "
             "(README: stock tools) and upload them by hand");
    }
    return;  // S3 keeps any other key byte for byte (CURLOPT_PATH_AS_IS)
  }
  // A folder: every key must be a file path there (folder_problem refuses '.' and '..' too).
  std::set<std::string> files, folders;
  std::size_t bad = 0;
  std::string first;
  for (const auto& o : plan.scan.manifest.objects) {
    Placement p = plan.place(o);
    std::string why = folder_problem(p.key);
    if (!why.empty()) {
      if (bad++ == 0) first = p.bucket + "/" + p.key + " (" + why + ")";
      continue;
    }
    std::string full = p.bucket + "/" + p.key;
    if (full.back() == '/') {
      folders.insert(full.substr(0, full.size() - 1));
    } else {
      files.insert(full);
    }
    for (std::size_t i = full.find('/', p.bucket.size() + 1); i != std::string::npos && i + 1 < full.size();
         i = full.find('/', i + 1)) {
      folders.insert(full.substr(0, i));
    }
  }
  if (bad > 0) {
    refuse(fmt::format("a folder cannot hold {} of its keys, first: {}", bad, first),
           "restore them into S3 (OBJECT_STORAGE=minio, or --target BUCKET), which keeps every key byte for byte");
  }
  for (const auto& f : files) {
    if (folders.count(f)) {
      refuse("the key " + f + " is also the folder of other keys, which a folder cannot hold",
             "restore it into S3 (OBJECT_STORAGE=minio, or --target BUCKET)");
    }
  }
}

}  // namespace

Placement ObjectsPlan::place(const ManifestObject& o) const {
  if (target_bucket.empty()) return {o.bucket, o.key};
  std::string prefix = target_prefix.empty() ? "" : target_prefix + "/";
  return {target_bucket, prefix + o.bucket + "/" + o.key};
}

ObjectsPlan plan_restore_objects(const Config& config, ObjectStore& store,
                                 const RestoreObjectsOptions& options, Progress& progress) {
  ObjectsPlan plan;
  plan.file = options.file;
  plan.mode = options.mode;
  if (plan.mode != "merge" && plan.mode != "exact") {
    throw Error(ErrorCode::usage, "unknown --mode '" + plan.mode + "'",
                "merge (put every object, leave others) or exact (also delete objects not in the backup)");
  }
  std::error_code ec;
  require_backup_file(plan.file, config.backup_dir, "objects");
  fs::path meta_path = plan.file;
  meta_path += ".meta";
  if (fs::exists(meta_path, ec)) {
    plan.meta = read_meta(meta_path);
    if (plan.meta->kind != "objects") {
      throw Error(ErrorCode::usage, plan.file.string() + " is a " + plan.meta->kind + " backup",
                  "restore objects takes an objects_*.tar.gz backup");
    }
  } else if (!options.allow_no_meta) {
    throw Error(ErrorCode::verification, "no " + meta_path.filename().string() + ": the checksum cannot be checked",
                "an archive made elsewhere can be restored with --allow-no-meta");
  }
  spdlog::info("restore objects: checking {}", plan.file.string());
  progress.start("check " + plan.file.filename().string());
  plan.scan = scan_attachment_tar(plan.file.string(), progress, config.age_identity);
  progress.finish();
  if (plan.meta) {
    if (plan.scan.sha256 != plan.meta->sha256 || plan.scan.size != plan.meta->size) {
      throw Error(ErrorCode::verification,
                  fmt::format("{} does not match its meta (sha256 {}…, meta {}…)", plan.file.filename().string(),
                              plan.scan.sha256.substr(0, 12), plan.meta->sha256.substr(0, 12)),
                  "the file is damaged or was changed; nothing was touched");
    }
    plan.checksum_state = "sha256 matches the meta; every object matches the manifest";
  } else {
    plan.checksum_state = "no meta (--allow-no-meta); every object matches the manifest";
  }

  if (!options.target.empty() && store.label() != "disk") {
    auto slash = options.target.find('/');
    plan.target_bucket = options.target.substr(0, slash);
    if (slash != std::string::npos) plan.target_prefix = options.target.substr(slash + 1);
    while (!plan.target_prefix.empty() && plan.target_prefix.back() == '/') plan.target_prefix.pop_back();
    if (plan.target_bucket.empty()) {
      throw Error(ErrorCode::usage, "invalid --target '" + options.target + "'", "use BUCKET or BUCKET/PREFIX");
    }
  }
  plan.target = store.describe() + (plan.target_bucket.empty() ? "" : " bucket " + options.target);
  check_placements(store, plan);

  std::set<std::string> target_buckets;
  std::set<std::pair<std::string, std::string>> restored;
  for (const auto& o : plan.scan.manifest.objects) {
    Placement p = plan.place(o);
    target_buckets.insert(p.bucket);
    restored.insert({p.bucket, p.key});
  }
  if (plan.target_bucket.empty()) {
    for (const auto& b : plan.scan.manifest.buckets) target_buckets.insert(b);
  }
  for (const auto& b : target_buckets) {
    if (!store.bucket_exists(b)) {
      plan.buckets_to_create.push_back(b);
      continue;
    }
    if (plan.mode == "exact") {
      std::string prefix = plan.target_bucket.empty() ? "" : (plan.target_prefix.empty() ? "" : plan.target_prefix + "/");
      store.list_objects(b, prefix, [&](const ObjectEntry& e) {
        if (!restored.count({b, e.key})) plan.to_delete.push_back({b, e.key});
      });
    }
  }
  return plan;
}

std::string ObjectsPlan::describe() const {
  std::string out = "restore plan (nothing has been changed):\n";
  out += fmt::format("  file:       {}\n", file.string());
  if (meta) out += fmt::format("  made:       {} from {}\n", meta->created_at, json_string(meta->source, "location", "?"));
  out += fmt::format("  contents:   {} objects, {} in {} bucket(s)\n", scan.manifest.objects.size(),
                     human_bytes(scan.object_bytes), scan.manifest.buckets.size());
  out += fmt::format("  checksum:   {}\n", checksum_state);
  out += fmt::format("  target:     {}\n", target);
  std::string created;
  for (const auto& b : buckets_to_create) created += (created.empty() ? "" : ", ") + b;
  if (!created.empty()) out += "  create:     bucket(s) " + created + "\n";
  out += fmt::format("  mode:       {}\n", mode == "exact" ? "exact: put every object, delete the others"
                                                          : "merge: put every object, leave the others");
  if (mode == "exact") {
    out += fmt::format("  delete:     {} object(s) not in the backup\n", to_delete.size());
    for (std::size_t i = 0; i < to_delete.size() && i < 20; ++i) {
      out += "              " + to_delete[i].bucket + "/" + to_delete[i].key + "\n";
    }
    if (to_delete.size() > 20) out += fmt::format("              ... and {} more\n", to_delete.size() - 20);
  }
  return out;
}

nlohmann::json ObjectsPlan::to_json() const {
  nlohmann::json del = nlohmann::json::array();
  for (const auto& p : to_delete) del.push_back(p.bucket + "/" + p.key);
  return {{"file", file.string()},          {"objects", scan.manifest.objects.size()},
          {"bytes", scan.object_bytes},      {"buckets", scan.manifest.buckets},
          {"checksum", checksum_state},      {"target", target},
          {"mode", mode},                    {"buckets_to_create", buckets_to_create},
          {"delete", del}};
}

}  // namespace backupctl
