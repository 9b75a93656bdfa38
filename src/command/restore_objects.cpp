// Running an objects restore (planned in restore_objects_plan.cpp): one class whose methods are the
// journal's steps, create-buckets, upload, verify and delete.
#include "command/restore_objects.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>
#include <set>

#include "io/age.hpp"
#include "util/digest.hpp"
#include "util/encoding.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/parallel.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"
#include "util/work_queue.hpp"

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

// The uploads on a bounded work queue, with what went up and what failed. After the first failure
// nothing more is sent (the queue drops what it holds); every failure of an upload already
// running is kept for the report.
class Uploader {
 public:
  Uploader(ObjectStore& store, int threads) : m_store(store), m_queue(threads, kBudget) {}

  // Waits until `bytes` more fit in kBudget: call before reading an object (or a part) into
  // memory, then submit it. False after a failure: then submit nothing.
  bool reserve(std::uint64_t bytes) { return m_queue.reserve(bytes); }

  void submit(Placement where, std::string data, PutOptions options) {
    const std::uint64_t n = data.size();
    m_queue.submit(n, [this, where = std::move(where), data = std::move(data), options = std::move(options)] {
      attempt(where, Counts::object, [&] {
        MemorySource src(data.data(), data.size());
        m_store.put_object(where.bucket, where.key, src, options);
      });
    });
  }

  // One part of a multipart upload (parts of one object go up side by side, like the small
  // objects; the caller completes the upload once they are all done: drain()).
  void submit_part(Placement where, MultipartUpload& upload, int number, std::string data, std::string md5_base64) {
    const std::uint64_t n = data.size();
    m_queue.submit(n, [this, where = std::move(where), &upload, number, data = std::move(data),
                       md5_base64 = std::move(md5_base64)] {
      attempt(where, Counts::part, [&] {
        MemorySource src(data.data(), data.size());
        upload.upload_part(number, src, md5_base64);
      });
    });
  }

  // Waits until every queued upload finished.
  void drain() { m_queue.drain(); }
  // Drops what is queued and waits for the running uploads, without throwing: before a multipart
  // upload whose parts may still be on the workers goes away (an error, a signal).
  void cancel() noexcept { m_queue.cancel(); }
  bool failed() { return m_queue.failed(); }

  std::vector<Failure> failures() {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_failures;
  }
  std::vector<Placement> succeeded() {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_succeeded;
  }

 private:
  // A part's object counts as uploaded when its upload is completed, not when the part is up.
  enum class Counts { object, part };

  void attempt(const Placement& where, Counts counts, const std::function<void()>& send) {
    try {
      send();
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_failures.push_back({where, e.what()});
      }
      throw;  // the queue stops feeding a failing server
    }
    if (counts == Counts::object) {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_succeeded.push_back(where);
    }
  }

  ObjectStore& m_store;
  std::mutex m_mutex;
  std::vector<Placement> m_succeeded;
  std::vector<Failure> m_failures;
  WorkQueue m_queue;  // last: its threads stop before the lists go
};

class ObjectsRestoreRun {
 public:
  ObjectsRestoreRun(const Config& config, ObjectStore& store, const ObjectsPlan& plan, Journal& journal,
                    Progress& progress)
      : m_config(config), m_store(store), m_plan(plan), m_journal(journal), m_progress(progress),
        m_disk(store.label() == "disk") {}

  ObjectsReport run() {
    const auto t0 = std::chrono::steady_clock::now();
    // What the repair does if we die from here on: abort open uploads (their own entries), remove
    // the disk store's unfinished files, and say the restore must be run again to complete.
    Journal::Entry restoring = m_journal.add("objects_restore", {{"file", m_plan.file.string()},
                                                                 {"target", m_plan.target},
                                                                 {"folder", m_disk ? m_store.describe() : ""}});
    create_buckets();
    upload();
    verify();
    delete_extra();
    restoring.settle();
    m_report.seconds = seconds_since(t0);
    return m_report;
  }

 private:
  void create_buckets() {
    m_journal.step("restore-objects.create-buckets");
    for (const auto& b : m_plan.buckets_to_create) {
      m_store.create_bucket(b);
      m_report.buckets_created.push_back(b);
      spdlog::info("restore objects: created bucket {}", b);
    }
  }

  // Reads the tar once, in order, and hands its objects to the uploader; throws after the uploads
  // in flight ended when one failed (report_failures).
  void upload() {
    spdlog::info("restore objects: uploading {} objects ({}) to {}", m_plan.scan.manifest.objects.size(),
                 human_bytes(m_plan.scan.object_bytes), m_plan.target);
    m_journal.step("restore-objects.upload");
    m_progress.start("upload");
    {
      std::map<std::string, const ManifestObject*> by_path;
      for (const auto& o : m_plan.scan.manifest.objects) by_path[o.path] = &o;
      const std::size_t half = m_plan.scan.manifest.objects.size() / 2;
      std::size_t read_objects = 0;
      std::uint64_t read_bytes = 0;
      Uploader uploader(m_store, m_config.object_parallel);
      std::unique_ptr<io::Source> raw = io::open_plaintext(m_plan.file, m_config.age_identity);
      TarReader reader(*raw);
      TarEntry entry;
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
        Expected exp{m_plan.place(o), o.size, {}};
        const bool sent = o.size <= kBufferedMax ? send_whole(o, reader, uploader, exp)
                                                 : send_in_parts(o, reader, uploader, exp);
        if (!sent) break;  // the failure is reported with the others
        read_bytes += o.size;
        m_progress.update(read_bytes);
        m_expected.push_back(std::move(exp));
      }
      uploader.drain();
      for (const auto& p : uploader.succeeded()) m_succeeded.insert({p.bucket, p.key});
      for (auto& f : uploader.failures()) m_failures.push_back(std::move(f));
      m_report.uploaded = m_succeeded.size();
    }
    m_progress.finish();
    // A signal is an interruption, not a store failure, also when a worker saw it first (its
    // upload then failed with "interrupted", which must not read as the store's error).
    check_interrupted();
    if (!m_failures.empty()) report_failures();
  }

  // Small: read into memory and sent as one PUT by a worker. False when an upload has failed.
  bool send_whole(const ManifestObject& o, TarReader& reader, Uploader& uploader, Expected& exp) {
    if (!uploader.reserve(o.size)) return false;
    std::string data;
    data.reserve(o.size);
    for (std::size_t n; (n = reader.read(m_buf)) > 0;) data.append(m_buf.data(), n);
    if (data.size() != o.size) {
      throw Error(ErrorCode::verification, "the archive's copy of " + o.key + " changed since it was checked",
                  "nothing more is uploaded; run again");
    }
    // The manifest's sha256 (checked against these bytes in the first pass) goes with the upload:
    // the server verifies the body against it. The MD5 is the ETag to expect.
    const std::string md5 = digest_raw(DigestKind::md5, data);
    const auto* md = reinterpret_cast<const unsigned char*>(md5.data());
    exp.etags.insert(hex_encode(md, md5.size()));
    PutOptions put{o.content_type, o.metadata};
    put.sha256_hex = o.sha256;
    put.md5_base64 = base64_encode(md, md5.size());
    uploader.submit(exp.where, std::move(data), put);
    return true;
  }

  // A multipart upload of `o`, journaled before it starts: a kill between the start and the
  // journal would leave an open upload no one knows of. Until its id is known, the repair aborts
  // the open uploads of this key begun since (there are none of ours before). `open_upload` is
  // the journal's entry, settled at once for a store with nothing to abort.
  std::unique_ptr<MultipartUpload> start_upload(const ManifestObject& o, const Placement& where,
                                                Journal::Entry& open_upload) {
    nlohmann::json record = {{"endpoint", m_store.describe()},
                             {"bucket", where.bucket},
                             {"key", where.key},
                             {"upload_id", ""},
                             // the server's clock may be behind ours by up to S3's 15 minutes
                             {"since", iso8601_utc(Clock::now() - std::chrono::minutes(15))}};
    open_upload = m_journal.add("multipart", record);
    auto upload = m_store.start_multipart(where.bucket, where.key, PutOptions{o.content_type, o.metadata});
    fault_point("restore-objects.upload-started");
    if (upload->upload_id().empty()) {
      open_upload.settle();  // a store with nothing to abort (a folder's parts are its own)
    } else {
      record["upload_id"] = upload->upload_id();
      open_upload.update(record);
    }
    return upload;
  }

  // Large: a multipart upload, its parts read in turn by this thread and sent side by side by the
  // workers (within the same memory budget) where the store takes parts in parallel. False when
  // an upload has failed (this one or another).
  bool send_in_parts(const ManifestObject& o, TarReader& reader, Uploader& uploader, Expected& exp) {
    const Placement& where = exp.where;
    const std::uint64_t part_size = part_size_for(o.size);
    std::string part;
    part.reserve(part_size);
    Digest whole_md5(DigestKind::md5), whole_sha(DigestKind::sha256), part_md5(DigestKind::md5);
    std::string part_md5s;
    int number = 0;
    try {
      Journal::Entry open_upload;
      auto upload = start_upload(o, where, open_upload);
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
          if (uploader.reserve(part.size())) uploader.submit_part(where, *upload, ++number, std::move(part), md5_base64);
          part = std::string();
          part.reserve(part_size);
        } else {
          MemorySource src(part.data(), part.size());
          upload->upload_part(++number, src, md5_base64);
          part.clear();
        }
        // Killed here, the store holds an open multipart upload with parts in it (or on the way)
        // that only the journal knows of: the repair aborts it.
        fault_point("restore-objects.part-sent");
      };
      // A part that failed on a worker ends the restore: nothing more is read or sent.
      auto part_failed = [&] { return parallel && uploader.failed(); };
      for (std::size_t n; !part_failed() && (n = reader.read(m_buf)) > 0;) {
        whole_md5.update(m_buf.data(), n);
        whole_sha.update(m_buf.data(), n);
        for (std::size_t off = 0; off < n;) {
          std::size_t k = std::min<std::size_t>(n - off, part_size - part.size());
          part.append(m_buf.data() + off, k);
          off += k;
          if (part.size() == part_size) send_part();
        }
      }
      if (part_failed()) return false;  // the failing part is reported with the others
      if (!part.empty()) send_part();
      if (whole_sha.finish_hex() != o.sha256) {
        throw Error(ErrorCode::verification, "the archive's copy of " + o.key + " changed since it was checked");
      }
      if (parallel) {
        uploader.drain();  // every part up (and whatever else was in flight)
        if (uploader.failed()) return false;
      }
      upload->complete();
      open_upload.settle();
      exp.etags.insert(whole_md5.finish_hex());
      exp.etags.insert(multipart_etag(part_md5s, number));
      m_succeeded.insert({where.bucket, where.key});
      return true;
    } catch (const Error& e) {
      if (e.code() == ErrorCode::interrupted || e.code() == ErrorCode::verification) throw;
      m_failures.push_back({where, e.what()});
      return false;
    }
  }

  // Some objects did not go up: their list goes to reports/, and the restore fails saying so.
  [[noreturn]] void report_failures() {
    nlohmann::json not_uploaded = nlohmann::json::array();
    for (const auto& o : m_plan.scan.manifest.objects) {
      Placement p = m_plan.place(o);
      if (!m_succeeded.count({p.bucket, p.key})) not_uploaded.push_back(p.bucket + "/" + p.key);
    }
    fs::path report_dir = m_config.backup_dir / "reports";
    make_dirs(report_dir, 0700);
    fs::path report_file = report_dir / ("restore_objects_" + name_timestamp(Clock::now()) + ".json");
    nlohmann::json j = {{"file", m_plan.file.string()},
                        {"uploaded", m_report.uploaded},
                        {"total", m_plan.scan.manifest.objects.size()},
                        {"first_error", m_failures.front().error},
                        {"not_uploaded", not_uploaded}};
    write_file_atomic(report_file, j.dump(1) + "\n");
    throw Error(ErrorCode::connection,
                fmt::format("restore objects stopped: {} of {} objects uploaded, {} not; first error: {}",
                            m_report.uploaded, m_plan.scan.manifest.objects.size(), not_uploaded.size(),
                            m_failures.front().error),
                "the objects not uploaded are listed in " + report_file.string() +
                    "; run the same command again once the store is back: it uploads everything again");
  }

  // Every object as the store now has it. S3: one listing per bucket (1000 objects per request,
  // not a HEAD per object) gives each object's size and ETag, compared with the bytes sent. Disk:
  // each file is read back and its sha256 compared with the manifest's.
  void verify() {
    spdlog::info("restore objects: checking {} objects in the store", m_expected.size());
    m_journal.step("restore-objects.verify");
    m_progress.start("verify");
    std::map<std::string, std::map<std::string, ObjectEntry>> listed;  // bucket -> key -> entry
    if (!m_disk) {
      std::set<std::string> buckets;
      for (const Expected& e : m_expected) buckets.insert(e.where.bucket);
      std::string prefix =
          m_plan.target_bucket.empty() || m_plan.target_prefix.empty() ? "" : m_plan.target_prefix + "/";
      for (const auto& b : buckets) {
        m_store.list_objects(b, prefix, [&](const ObjectEntry& e) { listed[b][e.key] = e; });
      }
    }
    std::map<std::pair<std::string, std::string>, const ManifestObject*> by_place;
    for (const auto& o : m_plan.scan.manifest.objects) {
      Placement p = m_plan.place(o);
      by_place[{p.bucket, p.key}] = &o;
    }
    std::mutex mismatch_mutex;
    std::vector<std::string> mismatches;
    parallel_for(m_expected.size(), m_disk ? m_config.object_parallel : 1, [&](std::size_t i) {
      const Expected& e = m_expected[i];
      std::string problem = m_disk ? file_problem(e, *by_place.at({e.where.bucket, e.where.key}))
                                   : listed_problem(e, listed);
      if (!problem.empty()) {
        std::lock_guard<std::mutex> lock(mismatch_mutex);
        mismatches.push_back(e.where.bucket + "/" + e.where.key + " (" + problem + ")");
      }
    });
    m_progress.finish();
    m_report.verified = m_expected.size() - mismatches.size();
    if (!mismatches.empty()) {
      throw Error(ErrorCode::verification,
                  fmt::format("{} uploaded object(s) differ from the backup, first: {}", mismatches.size(),
                              mismatches.front()),
                  "run the restore again; if it persists the store alters objects (encryption, compression)");
    }
    for (const ManifestObject& o : m_plan.scan.manifest.objects) m_report.bytes += o.size;
  }

  // What is wrong with a restored file of a folder store ("" when nothing): read back and hashed.
  std::string file_problem(const Expected& e, const ManifestObject& o) {
    io::NullSink null;
    io::Sha256Sink sha(null);
    ObjectInfo info = m_store.get_object(e.where.bucket, e.where.key, sha);
    sha.finish();
    return info.size != e.size || sha.hex() != o.sha256 ? "content differs" : "";
  }

  // What is wrong with an uploaded object as the store lists it ("" when nothing).
  static std::string listed_problem(const Expected& e,
                                    const std::map<std::string, std::map<std::string, ObjectEntry>>& listed) {
    auto b = listed.find(e.where.bucket);
    if (b == listed.end()) return "missing";
    auto it = b->second.find(e.where.key);
    if (it == b->second.end()) return "missing";
    if (it->second.size != e.size || (!it->second.etag.empty() && !e.etags.count(it->second.etag))) {
      return fmt::format("size {} vs {}, ETag {}", it->second.size, e.size, it->second.etag);
    }
    return "";
  }

  // --mode exact: the objects the backup does not have, listed in the plan.
  void delete_extra() {
    if (m_plan.mode != "exact" || m_plan.to_delete.empty()) return;
    m_journal.step("restore-objects.delete");
    std::map<std::string, std::vector<std::string>> per_bucket;
    for (const auto& p : m_plan.to_delete) per_bucket[p.bucket].push_back(p.key);
    for (const auto& [bucket, keys] : per_bucket) {
      m_store.delete_objects(bucket, keys);
      m_report.deleted += keys.size();
    }
  }

  const Config& m_config;
  ObjectStore& m_store;
  const ObjectsPlan& m_plan;
  Journal& m_journal;
  Progress& m_progress;
  const bool m_disk;
  ObjectsReport m_report;
  std::vector<Expected> m_expected;
  std::vector<Failure> m_failures;
  std::set<std::pair<std::string, std::string>> m_succeeded;
  std::vector<char> m_buf = std::vector<char>(1 << 20);
};

}  // namespace

ObjectsReport run_restore_objects(const Config& config, ObjectStore& store, const ObjectsPlan& plan,
                                  Journal& journal, Progress& progress) {
  return ObjectsRestoreRun(config, store, plan, journal, progress).run();
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
