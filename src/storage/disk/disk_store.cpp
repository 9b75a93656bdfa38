#include "storage/disk/disk_store.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "io/atomic_file.hpp"
#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

bool safe_segment(std::string_view s) { return !s.empty() && s != "." && s != ".."; }

bool safe_name(const std::string& bucket) {
  return safe_segment(bucket) && bucket.find('/') == std::string::npos && bucket[0] != '.';
}

std::string mtime_iso(const struct stat& st) { return iso8601(Clock::from_time_t(st.st_mtime)); }

// Writes to a temporary file beside the target, renamed into place on finish.
class TempFileWriter {
 public:
  explicit TempFileWriter(fs::path target) : m_target(std::move(target)) {
    make_dirs(m_target.parent_path(), 0755);
    std::random_device rd;
    m_tmp = m_target.parent_path() / (".backupctl-tmp-" + std::to_string(rd()) + "-" + m_target.filename().string());
    m_fd = Fd(::open(m_tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!m_fd) throw_errno("cannot create " + m_tmp.string());
  }
  ~TempFileWriter() {
    if (!m_done) ::unlink(m_tmp.c_str());
  }
  void write(io::Source& src) {
    std::vector<char> buf(1 << 16);
    for (;;) {
      std::size_t n = src.read(buf);
      if (n == 0) break;
      write_all(m_fd.get(), buf.data(), n, "cannot write " + m_tmp.string());
    }
  }
  void finish() {
    if (::fsync(m_fd.get()) != 0) throw_errno("cannot fsync " + m_tmp.string());
    m_fd.reset();
    std::error_code ec;
    if (fs::is_directory(m_target, ec)) {
      throw Error(ErrorCode::io, "cannot store " + m_target.string() + ": a directory has that name",
                  "the object store holds both a key and a folder of that name; S3 allows it, a "
                  "file system does not");
    }
    if (::rename(m_tmp.c_str(), m_target.c_str()) != 0) throw_errno("cannot rename to " + m_target.string());
    m_done = true;
  }

 private:
  fs::path m_target, m_tmp;
  Fd m_fd;
  bool m_done = false;
};

class DiskMultipart : public MultipartUpload {
 public:
  explicit DiskMultipart(fs::path target) : m_writer(std::move(target)) {}
  void upload_part(int number, RewindableSource& part, const std::string&) override {
    if (number != m_next) {
      throw Error(ErrorCode::internal, "disk multipart: parts must come in order");
    }
    ++m_next;
    part.rewind();
    m_writer.write(part);
  }
  void complete() override { m_writer.finish(); }
  void abort() override {}

 private:
  TempFileWriter m_writer;
  int m_next = 1;
};

}  // namespace

fs::path DiskStore::path_of(const std::string& bucket, const std::string& key) const {
  if (!safe_name(bucket)) {
    throw Error(ErrorCode::usage, "invalid bucket name '" + bucket + "' for a folder",
                "bucket names are one path segment");
  }
  fs::path p = m_root / bucket;
  if (key.empty()) return p;
  std::size_t start = 0;
  bool any = false;
  while (start <= key.size()) {
    std::size_t slash = key.find('/', start);
    std::string seg = key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (slash == std::string::npos && seg.empty() && any) break;  // "dir/": a folder marker
    if (!safe_segment(seg) || seg.find('\0') != std::string::npos) {
      throw Error(ErrorCode::usage, "the key '" + key + "' is not a safe relative path",
                  "keys with empty, '.' or '..' segments or a leading '/' cannot be stored in a folder");
    }
    p /= seg;
    any = true;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return p;
}

std::vector<std::string> DiskStore::list_buckets() {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(m_root, ec)) {
    throw Error(ErrorCode::not_found, "OBJECT_STORAGE_DIR " + m_root.string() + " is not a directory",
                "set OBJECT_STORAGE_DIR to the attachments folder");
  }
  for (const auto& de : fs::directory_iterator(m_root)) {
    std::string name = de.path().filename().string();
    if (de.is_directory() && !de.is_symlink() && safe_name(name)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool DiskStore::bucket_exists(const std::string& bucket) {
  std::error_code ec;
  return safe_name(bucket) && fs::is_directory(m_root / bucket, ec);
}

void DiskStore::create_bucket(const std::string& bucket) { make_dirs(path_of(bucket, ""), 0755); }

void DiskStore::delete_bucket(const std::string& bucket) {
  fs::path p = path_of(bucket, "");
  std::error_code ec;
  // Only empty folders are left once the objects are deleted: remove the tree of folders.
  for (auto it = fs::recursive_directory_iterator(p, ec); it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_directory(ec)) {
      throw Error(ErrorCode::io, "cannot delete bucket folder " + p.string() + ": it is not empty");
    }
  }
  fs::remove_all(p, ec);
  if (ec) throw Error(ErrorCode::io, "cannot delete " + p.string() + ": " + ec.message());
}

void DiskStore::list_objects(const std::string& bucket, const std::string& prefix,
                             const std::function<void(const ObjectEntry&)>& each) {
  fs::path base = m_root / bucket;
  std::error_code ec;
  if (!safe_name(bucket) || !fs::is_directory(base, ec)) {
    throw Error(ErrorCode::not_found, "bucket folder " + base.string() + " does not exist",
                "check the bucket name and OBJECT_STORAGE_DIR");
  }
  std::vector<ObjectEntry> entries;
  for (auto it = fs::recursive_directory_iterator(base, fs::directory_options::none);
       it != fs::recursive_directory_iterator(); ++it) {
    const fs::path& p = it->path();
    std::string name = p.filename().string();
    if (it->is_symlink()) {
      spdlog::warn("disk store: skipping symbolic link {}", p.string());
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    if (name.rfind(".backupctl-tmp-", 0) == 0) continue;
    std::string key = fs::relative(p, base).generic_string();
    if (!prefix.empty() && key.compare(0, prefix.size(), prefix) != 0) continue;
    struct stat st{};
    if (::stat(p.c_str(), &st) != 0) continue;
    entries.push_back({key, static_cast<std::uint64_t>(st.st_size), "", mtime_iso(st)});
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  for (const auto& e : entries) each(e);
}

ObjectInfo DiskStore::head_object(const std::string& bucket, const std::string& key) {
  fs::path p = path_of(bucket, key);
  struct stat st{};
  if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::not_found, "no object " + bucket + "/" + key + " in " + m_root.string());
  }
  ObjectInfo info;
  info.size = static_cast<std::uint64_t>(st.st_size);
  info.last_modified = mtime_iso(st);
  return info;
}

ObjectInfo DiskStore::get_object(const std::string& bucket, const std::string& key, io::Sink& sink) {
  ObjectInfo info = head_object(bucket, key);
  fs::path p = path_of(bucket, key);
  Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) throw_errno("cannot open " + p.string());
  io::FdSource src(fd.get(), p.string());
  std::vector<char> buf(1 << 16);
  for (;;) {
    std::size_t n = src.read(buf);
    if (n == 0) break;
    sink.write(std::span<const char>(buf.data(), n));
  }
  return info;
}

void DiskStore::put_object(const std::string& bucket, const std::string& key, RewindableSource& body,
                           const PutOptions&) {
  if (!key.empty() && key.back() == '/') {  // a folder marker
    make_dirs(path_of(bucket, key), 0755);
    return;
  }
  TempFileWriter w(path_of(bucket, key));
  body.rewind();
  w.write(body);
  w.finish();
}

std::unique_ptr<MultipartUpload> DiskStore::start_multipart(const std::string& bucket,
                                                            const std::string& key,
                                                            const PutOptions&) {
  return std::make_unique<DiskMultipart>(path_of(bucket, key));
}

void DiskStore::delete_objects(const std::string& bucket, const std::vector<std::string>& keys) {
  for (const auto& key : keys) {
    fs::path p = path_of(bucket, key);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) throw_errno("cannot delete " + p.string());
  }
}

}  // namespace backupctl
