#include "command/restore_objects.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "catalog/catalog.hpp"
#include "io/age.hpp"
#include "util/digest.hpp"
#include "util/encoding.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/parallel.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

// Objects up to this size are read into memory and sent whole, as one PUT, by the worker threads
// (a 5xx retries the whole body from memory); larger ones are read part by part and sent as a
// multipart upload of ObjectStore::kMinPartSize parts or more, the parts side by side on the
// same workers. One PUT is one request where a
// multipart upload of the same object takes five (start, parts, complete), and the server need
// not join parts afterwards (s3rver, the earlier test server, re-read and re-hashed every part: 20 MiB objects as one
// PUT took the benchmark's restore from 11.7 s to 9.4 s). awscli's threshold is 8 MiB, rclone's
// 200 MiB; this one is what the memory budget below holds twice.
constexpr std::uint64_t kBufferedMax = 24u << 20;
// Bytes held in memory for queued and running uploads.
constexpr std::uint64_t kBudget = 48u << 20;


// What the server should report as the ETag of what we sent: the MD5 for a single PUT; for a
// multipart upload S3 uses md5(concatenated part MD5s)-N (some servers use the whole MD5
// instead: both are accepted).
struct Expected {
  Placement where;
  std::uint64_t size = 0;
  std::set<std::string> etags;
};

struct Failure {
  Placement where;
  std::string error;
};

class Uploader {
 public:
  Uploader(ObjectStore& store, int threads) : m_store(store) {
    for (int i = 0; i < threads; ++i) m_threads.emplace_back([this] { work(); });
  }
  ~Uploader() { stop(); }

  // Waits until `bytes` more fit in kBudget (queued and running uploads), and counts them: call
  // before reading an object into memory, then submit() it.
  void reserve(std::uint64_t bytes) {
    std::unique_lock<std::mutex> lock(m_mutex);
    while (!m_cv.wait_for(lock, std::chrono::milliseconds(100), [&] {
      return m_bytes == 0 || m_bytes + bytes <= kBudget || !m_failures.empty();
    })) {
      check_interrupted();
    }
    m_bytes += bytes;
  }

  // Queues an upload.
  void submit(Placement where, std::string data, PutOptions options) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_queue.push_back({std::move(where), std::move(data), std::move(options), nullptr, 0, ""});
    m_cv.notify_all();
  }

  // Queues one part of a multipart upload (parts of one object go up side by side, like the
  // small objects; the caller completes the upload once they are all done: drain()).
  void submit_part(Placement where, MultipartUpload& upload, int number, std::string data, std::string md5_base64) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_queue.push_back({std::move(where), std::move(data), {}, &upload, number, std::move(md5_base64)});
    m_cv.notify_all();
  }

  // Waits until the queue is empty and every upload finished.
  void drain() {
    std::unique_lock<std::mutex> lock(m_mutex);
    while (!m_cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return m_queue.empty() && m_busy == 0; })) {
      check_interrupted();
    }
  }

  // Drops what is queued and waits for the running uploads, without throwing: before a multipart
  // upload whose parts may still be on the workers goes away (an error, a signal).
  void cancel() noexcept {
    std::unique_lock<std::mutex> lock(m_mutex);
    for (const auto& job : m_queue) m_bytes -= job.data.size();
    m_queue.clear();
    m_cv.wait(lock, [&] { return m_busy == 0; });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_stop = true;
      m_queue.clear();
    }
    m_cv.notify_all();
    for (auto& t : m_threads) {
      if (t.joinable()) t.join();
    }
  }

  bool failed() {
    std::lock_guard<std::mutex> lock(m_mutex);
    return !m_failures.empty();
  }
  std::vector<Failure> failures() {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_failures;
  }
  std::vector<Placement> succeeded() {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_succeeded;
  }

 private:
  struct Job {
    Placement where;
    std::string data;
    PutOptions options;
    MultipartUpload* upload = nullptr;  // a part of it, when set
    int part = 0;
    std::string part_md5;
  };

  void work() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_cv.wait(lock, [&] { return m_stop || !m_queue.empty(); });
        if (m_stop) return;
        job = std::move(m_queue.front());
        m_queue.pop_front();
        ++m_busy;
      }
      std::string error;
      try {
        MemorySource src(job.data.data(), job.data.size());
        if (job.upload) {
          job.upload->upload_part(job.part, src, job.part_md5);
        } else {
          m_store.put_object(job.where.bucket, job.where.key, src, job.options);
        }
      } catch (const std::exception& e) {
        error = e.what();
      }
      {
        std::lock_guard<std::mutex> lock(m_mutex);
        --m_busy;
        m_bytes -= job.data.size();
        if (error.empty()) {
          if (!job.upload) m_succeeded.push_back(job.where);  // a part: its object counts when completed
        } else {
          m_failures.push_back({job.where, error});
          // Stop feeding a failing server; the rest is reported as not uploaded.
          for (const auto& queued : m_queue) m_bytes -= queued.data.size();
          m_queue.clear();
        }
      }
      m_cv.notify_all();
    }
  }

  ObjectStore& m_store;
  std::vector<std::thread> m_threads;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<Job> m_queue;
  std::uint64_t m_bytes = 0;
  int m_busy = 0;
  std::vector<Placement> m_succeeded;
  std::vector<Failure> m_failures;
  bool m_stop = false;
};

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

ObjectsReport run_restore_objects(const Config& config, ObjectStore& store, const ObjectsPlan& plan,
                                  Journal& journal, Progress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  ObjectsReport report;
  const bool disk = store.label() == "disk";
  // What the repair does if we die from here on: abort open uploads (their own entries), remove the
  // disk store's unfinished files, and say the restore must be run again to complete.
  Journal::Entry restoring = journal.add("objects_restore", {{"file", plan.file.string()},
                                                             {"target", plan.target},
                                                             {"folder", disk ? store.describe() : ""}});
  journal.step("restore-objects.create-buckets");
  for (const auto& b : plan.buckets_to_create) {
    store.create_bucket(b);
    report.buckets_created.push_back(b);
    spdlog::info("restore objects: created bucket {}", b);
  }
  std::map<std::string, const ManifestObject*> by_path;
  for (const auto& o : plan.scan.manifest.objects) by_path[o.path] = &o;

  std::vector<Expected> expected;
  std::vector<Failure> failures;
  std::set<std::pair<std::string, std::string>> succeeded;
  spdlog::info("restore objects: uploading {} objects ({}) to {}", plan.scan.manifest.objects.size(),
               human_bytes(plan.scan.object_bytes), plan.target);
  journal.step("restore-objects.upload");
  progress.start("upload");
  {
    const std::size_t half = plan.scan.manifest.objects.size() / 2;
    std::size_t read_objects = 0;
    Uploader uploader(store, config.object_parallel);
    std::unique_ptr<io::Source> raw = io::open_plaintext(plan.file, config.age_identity);
    TarReader reader(*raw);
    TarEntry entry;
    std::vector<char> buf(1 << 20);
    std::uint64_t read_bytes = 0;
    while (reader.next(entry) && !uploader.failed()) {
      check_interrupted();
      if (entry.path == kManifestPath) continue;
      auto it = by_path.find(entry.path);
      if (it == by_path.end() || !entry.regular) {
        throw Error(ErrorCode::verification, "the archive changed since it was checked: " + entry.path,
                    "nothing more is uploaded; run again");
      }
      const ManifestObject& o = *it->second;
      if (read_objects++ == half) fault_point("restore-objects.half-uploaded");
      Placement where = plan.place(o);
      PutOptions put{o.content_type, o.metadata};
      Expected exp{where, o.size, {}};
      if (o.size <= kBufferedMax) {
        uploader.reserve(o.size);
        std::string data;
        data.reserve(o.size);
        for (std::size_t n; (n = reader.read(buf)) > 0;) data.append(buf.data(), n);
        if (data.size() != o.size) {
          throw Error(ErrorCode::verification, "the archive's copy of " + o.key + " changed since it was checked",
                      "nothing more is uploaded; run again");
        }
        // The manifest's sha256 (checked against these bytes in the first pass) goes with the
        // upload: the server verifies the body against it. The MD5 is the ETag to expect.
        const std::string md5 = digest_raw(DigestKind::md5, data);
        const auto* md = reinterpret_cast<const unsigned char*>(md5.data());
        exp.etags.insert(hex_encode(md, md5.size()));
        expected.push_back(std::move(exp));
        put.sha256_hex = o.sha256;
        put.md5_base64 = base64_encode(md, md5.size());
        uploader.submit(where, std::move(data), put);
        read_bytes += o.size;
        progress.update(read_bytes);
        continue;
      } else {
        // Large: multipart, parts read in turn by this thread and sent side by side by the
        // workers (within the same memory budget) where the store takes parts in parallel.
        std::uint64_t part_size = part_size_for(o.size);
        std::string part;
        part.reserve(part_size);
        Digest whole_md5(DigestKind::md5), whole_sha(DigestKind::sha256), part_md5(DigestKind::md5);
        std::string part_md5s;
        int number = 0;
        try {
          // Journaled before it starts: a kill between the start and the journal would leave an
          // open upload no one knows of. Until its id is known, the repair aborts the open
          // uploads of this key begun since (there are none of ours before).
          nlohmann::json record = {{"endpoint", store.describe()},
                                   {"bucket", where.bucket},
                                   {"key", where.key},
                                   {"upload_id", ""},
                                   // the server's clock may be behind ours by up to S3's 15 minutes
                                   {"since", iso8601_utc(Clock::now() - std::chrono::minutes(15))}};
          Journal::Entry open_upload = journal.add("multipart", record);
          auto upload = store.start_multipart(where.bucket, where.key, put);
          fault_point("restore-objects.upload-started");
          if (upload->upload_id().empty()) {
            open_upload.settle();  // a store with nothing to abort (a folder's parts are its own)
          } else {
            record["upload_id"] = upload->upload_id();
            open_upload.update(record);
          }
          const bool parallel = upload->parallel_parts();
          // Whatever ends this block (an error, a signal), no worker may still hold a part of
          // `upload` when it goes (aborting the upload); declared after it, this runs first.
          struct PartsSettled {
            Uploader& uploader;
            bool parallel;
            ~PartsSettled() {
              if (parallel) uploader.cancel();
            }
          } parts_settled{uploader, parallel};
          auto send_part = [&] {
            part_md5.update(part);
            const std::string md5 = part_md5.finish_raw();
            part_md5s += md5;
            const std::string md5_base64 = base64_encode(reinterpret_cast<const unsigned char*>(md5.data()), md5.size());
            if (parallel) {
              uploader.reserve(part.size());
              uploader.submit_part(where, *upload, ++number, std::move(part), md5_base64);
              part = std::string();
              part.reserve(part_size);
            } else {
              MemorySource src(part.data(), part.size());
              upload->upload_part(++number, src, md5_base64);
              part.clear();
            }
            // Killed here, the store holds an open multipart upload with parts in it (or on the
            // way) that only the journal knows of: the repair aborts it.
            fault_point("restore-objects.part-sent");
          };
          // A part that failed on a worker ends the restore: nothing more is read or sent.
          auto part_failed = [&] { return parallel && uploader.failed(); };
          for (std::size_t n; !part_failed() && (n = reader.read(buf)) > 0;) {
            whole_md5.update(buf.data(), n);
            whole_sha.update(buf.data(), n);
            std::size_t off = 0;
            while (off < n) {
              std::size_t k = std::min<std::size_t>(n - off, part_size - part.size());
              part.append(buf.data() + off, k);
              off += k;
              if (part.size() == part_size) send_part();
            }
          }
          if (part_failed()) break;  // the failing part is reported with the others
          if (!part.empty()) send_part();
          if (whole_sha.finish_hex() != o.sha256) {
            throw Error(ErrorCode::verification, "the archive's copy of " + o.key + " changed since it was checked");
          }
          if (parallel) {
            uploader.drain();  // every part up (and whatever else was in flight)
            if (uploader.failed()) break;  // the failing part is reported with the others
          }
          upload->complete();
          open_upload.settle();
          exp.etags.insert(whole_md5.finish_hex());
          exp.etags.insert(multipart_etag(part_md5s, number));
          succeeded.insert({where.bucket, where.key});
        } catch (const Error& e) {
          if (e.code() == ErrorCode::interrupted || e.code() == ErrorCode::verification) throw;
          failures.push_back({where, e.what()});
          break;
        }
      }
      read_bytes += o.size;
      progress.update(read_bytes);
      expected.push_back(std::move(exp));
    }
    uploader.drain();
    for (const auto& p : uploader.succeeded()) succeeded.insert({p.bucket, p.key});
    for (auto& f : uploader.failures()) failures.push_back(std::move(f));
    report.uploaded = succeeded.size();
  }
  progress.finish();
  // A signal is an interruption, not a store failure, also when a worker saw it first (its
  // upload then failed with "interrupted", which must not read as the store's error).
  check_interrupted();

  if (!failures.empty()) {
    nlohmann::json not_uploaded = nlohmann::json::array();
    for (const auto& o : plan.scan.manifest.objects) {
      Placement p = plan.place(o);
      if (!succeeded.count({p.bucket, p.key})) not_uploaded.push_back(p.bucket + "/" + p.key);
    }
    fs::path report_dir = config.backup_dir / "reports";
    make_dirs(report_dir, 0700);
    fs::path report_file = report_dir / ("restore_objects_" + name_timestamp(Clock::now()) + ".json");
    nlohmann::json j = {{"file", plan.file.string()},
                        {"uploaded", report.uploaded},
                        {"total", plan.scan.manifest.objects.size()},
                        {"first_error", failures.front().error},
                        {"not_uploaded", not_uploaded}};
    write_file_atomic(report_file, j.dump(1) + "\n");
    throw Error(ErrorCode::connection,
                fmt::format("restore objects stopped: {} of {} objects uploaded, {} not; first error: {}",
                            report.uploaded, plan.scan.manifest.objects.size(), not_uploaded.size(),
                            failures.front().error),
                "the objects not uploaded are listed in " + report_file.string() +
                    "; run the same command again once the store is back: it uploads everything again");
  }

  // Every object as the store now has it. S3: one listing per bucket (1000 objects per request,
  // not a HEAD per object) gives each object's size and ETag, compared with the bytes sent. Disk:
  // each file is read back and its sha256 compared with the manifest's.
  spdlog::info("restore objects: checking {} objects in the store", expected.size());
  journal.step("restore-objects.verify");
  progress.start("verify");
  std::vector<std::string> mismatches;
  std::map<std::string, std::map<std::string, ObjectEntry>> listed;  // bucket -> key -> entry
  if (!disk) {
    std::set<std::string> buckets;
    for (const Expected& e : expected) buckets.insert(e.where.bucket);
    std::string prefix = plan.target_bucket.empty() || plan.target_prefix.empty() ? "" : plan.target_prefix + "/";
    for (const auto& b : buckets) {
      store.list_objects(b, prefix, [&](const ObjectEntry& e) { listed[b][e.key] = e; });
    }
  }
  std::map<std::pair<std::string, std::string>, const ManifestObject*> by_place;
  for (const auto& o : plan.scan.manifest.objects) {
    Placement p = plan.place(o);
    by_place[{p.bucket, p.key}] = &o;
  }
  std::mutex mismatch_mutex;
  std::vector<const Expected*> todo;
  for (const Expected& e : expected) todo.push_back(&e);
  parallel_for(todo.size(), disk ? config.object_parallel : 1, [&](std::size_t i) {
    const Expected& e = *todo[i];
    std::string problem;
    if (disk) {
      io::NullSink null;
      io::Sha256Sink sha(null);
      ObjectInfo info = store.get_object(e.where.bucket, e.where.key, sha);
      sha.finish();
      const ManifestObject* o = by_place.at({e.where.bucket, e.where.key});
      if (info.size != e.size || sha.hex() != o->sha256) problem = "content differs";
    } else {
      auto b = listed.find(e.where.bucket);
      auto it = b == listed.end() ? decltype(b->second.end()){} : b->second.find(e.where.key);
      if (b == listed.end() || it == b->second.end()) {
        problem = "missing";
      } else if (it->second.size != e.size || (!it->second.etag.empty() && !e.etags.count(it->second.etag))) {
        problem = fmt::format("size {} vs {}, ETag {}", it->second.size, e.size, it->second.etag);
      }
    }
    if (!problem.empty()) {
      std::lock_guard<std::mutex> lock(mismatch_mutex);
      mismatches.push_back(e.where.bucket + "/" + e.where.key + " (" + problem + ")");
    }
  });
  progress.finish();
  report.verified = expected.size() - mismatches.size();
  if (!mismatches.empty()) {
    throw Error(ErrorCode::verification,
                fmt::format("{} uploaded object(s) differ from the backup, first: {}", mismatches.size(), mismatches.front()),
                "run the restore again; if it persists the store alters objects (encryption, compression)");
  }
  for (const ManifestObject& o : plan.scan.manifest.objects) report.bytes += o.size;

  if (plan.mode == "exact" && !plan.to_delete.empty()) {
    journal.step("restore-objects.delete");
    std::map<std::string, std::vector<std::string>> per_bucket;
    for (const auto& p : plan.to_delete) per_bucket[p.bucket].push_back(p.key);
    for (const auto& [bucket, keys] : per_bucket) {
      store.delete_objects(bucket, keys);
      report.deleted += keys.size();
    }
  }
  restoring.settle();
  report.seconds = seconds_since(t0);
  return report;
}

std::string ObjectsReport::describe() const {
  std::string out = fmt::format("restored {} objects ({}) in {}; {} verified in the store\n", uploaded,
                                human_bytes(bytes), human_duration(seconds), verified);
  if (!buckets_created.empty()) {
    std::string b;
    for (const auto& x : buckets_created) b += (b.empty() ? "" : ", ") + x;
    out += "  buckets created: " + b + "\n";
  }
  if (deleted > 0) out += fmt::format("  deleted {} object(s) not in the backup (--mode exact)\n", deleted);
  return out;
}

nlohmann::json ObjectsReport::to_json() const {
  return {{"ok", true},
          {"uploaded", uploaded},
          {"bytes", bytes},
          {"verified", verified},
          {"deleted", deleted},
          {"buckets_created", buckets_created},
          {"seconds", seconds}};
}

}  // namespace backupctl
