#include "io/incoming.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <map>

#include "util/env.hpp"
#include "util/error.hpp"
#include "util/signals.hpp"

namespace backupctl::io {

namespace fs = std::filesystem;

namespace {

std::mutex g_registry_mutex;
std::map<std::string, std::weak_ptr<IncomingFile>> g_registry;

std::string key_of(const fs::path& name) {
  return fs::absolute(name).lexically_normal().string();
}

// An anonymous file in `dir`: O_TMPFILE where the file system has it, else a file unlinked
// right after it is made (a kill between the two leaves a `.incoming.*` file; no file system
// backupctl runs on here lacks O_TMPFILE).
Fd anonymous_file(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return Fd(fd);
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
    throw_errno("cannot make a spool file in " + dir.string());
  std::string templ = (dir / ".incoming.XXXXXX").string();
  fd = ::mkostemp(templ.data(), O_CLOEXEC);
  if (fd < 0) throw_errno("cannot make a spool file in " + dir.string());
  ::unlink(templ.c_str());
  return Fd(fd);
}

Error read_after_drop(const fs::path& name) {
  return Error(ErrorCode::internal, name.filename().string() + " was read after its bytes were dropped",
               "a file fetched while it is read is read once (IncomingFile::release_as_read): report this");
}


}  // namespace

// An open reader: its position holds back the dropping and, after release_as_read(), the writer.
class IncomingSource : public Source {
 public:
  IncomingSource(std::shared_ptr<IncomingFile> file, const std::atomic<bool>* stop)
      : m_file(std::move(file)), m_stop(stop), m_position(m_file->add_reader()) {}
  ~IncomingSource() override { m_file->remove_reader(m_position); }
  IncomingSource(const IncomingSource&) = delete;
  IncomingSource& operator=(const IncomingSource&) = delete;
  std::size_t read(std::span<char> buf) override {
    std::size_t n = m_file->read(m_position, m_offset, buf, m_stop);
    m_offset += n;
    return n;
  }

 private:
  std::shared_ptr<IncomingFile> m_file;
  const std::atomic<bool>* m_stop;
  std::uint64_t* m_position;
  std::uint64_t m_offset = 0;
};

IncomingFile::IncomingFile(fs::path name, std::uint64_t size, Fd spool, std::uint64_t window)
    : m_name(std::move(name)), m_size(size), m_spool(std::move(spool)), m_window(std::max<std::uint64_t>(window, 1)) {}

std::shared_ptr<IncomingFile> IncomingFile::create(const fs::path& name, std::uint64_t size,
                                                   const fs::path& spool_dir, std::uint64_t window) {
  std::shared_ptr<IncomingFile> file(new IncomingFile(name, size, anonymous_file(spool_dir), window));
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  auto& slot = g_registry[key_of(name)];
  if (!slot.expired()) {
    throw Error(ErrorCode::usage,
                name.filename().string() + " is already being fetched by this run",
                "name each backup once");
  }
  slot = file;
  return file;
}

std::uint64_t IncomingFile::window_setting() {
  if (auto w = env_value("BACKUPCTL_SPOOL_WINDOW")) return std::max<std::uint64_t>(std::strtoull(w->c_str(), nullptr, 10), 1);
  return kWindow;
}

std::shared_ptr<IncomingFile> IncomingFile::find(const fs::path& name) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  auto it = g_registry.find(key_of(name));
  return it == g_registry.end() ? nullptr : it->second.lock();
}

IncomingFile::~IncomingFile() {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  auto it = g_registry.find(key_of(m_name));
  if (it != g_registry.end() && it->second.expired()) g_registry.erase(it);
}

void IncomingFile::append(std::span<const char> data) {
  auto stopped = [&] {
    return Error(ErrorCode::interrupted, "the download of " + m_name.filename().string() + " was stopped");
  };
  if (m_cancelled) throw stopped();
  std::uint64_t at;
  {
    std::unique_lock<std::mutex> lock(m_mutex);
    // A window in: wait for the readers, unless one asked for bytes not yet here (it waits for
    // this writer in turn). Its start: the first byte until the last reader is open (a new
    // reader starts there), then the slowest reader.
    auto ahead = [&] {
      if (m_arrived < m_wanted) return false;
      std::uint64_t start = 0;
      if (m_released) {
        start = m_readers.empty() ? m_dropped : *std::min_element(m_readers.begin(), m_readers.end());
      }
      return m_arrived - start >= m_window;
    };
    while (ahead()) {
      m_room.wait_for(lock, std::chrono::milliseconds(100));
      lock.unlock();
      if (m_cancelled) throw stopped();
      check_interrupted();
      lock.lock();
    }
    at = m_arrived;
  }
  if (data.size() > m_size.load() - at) {
    throw Error(ErrorCode::verification,
                m_name.filename().string() + " on the remote is longer than its meta says (" +
                    std::to_string(m_size.load()) + " bytes)",
                "the off-site copy is damaged or was replaced; pick another backup (`backupctl "
                "list --remote`)");
  }
  for (std::size_t done = 0; done < data.size();) {
    ssize_t n = ::pwrite(m_spool.get(), data.data() + done, data.size() - done,
                         static_cast<off_t>(at + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write the spool of " + m_name.filename().string());
    }
    done += static_cast<std::size_t>(n);
  }
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_arrived = at + data.size();
  }
  m_grew.notify_all();
}

void IncomingFile::complete() {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_size == kUnknownSize) m_size = m_arrived;
    if (m_arrived != m_size)
      throw Error(ErrorCode::internal, "an incoming file completed before its end");
    m_complete = true;
  }
  m_grew.notify_all();
}

void IncomingFile::fail(std::exception_ptr why) {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!m_failure) m_failure = std::move(why);
  }
  m_grew.notify_all();
}

void IncomingFile::cancel() {
  m_cancelled = true;
}

std::uint64_t IncomingFile::arrived() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_arrived;
}

std::unique_ptr<Source> IncomingFile::open(const std::atomic<bool>* stop) {
  return std::make_unique<IncomingSource>(shared_from_this(), stop);
}

void IncomingFile::release_as_read() {
  {
    std::unique_lock<std::mutex> lock(m_mutex);
    m_released = true;
    drop_read_bytes(lock);
  }
  m_room.notify_all();
}

std::uint64_t IncomingFile::spooled() const {
  struct stat st{};
  if (::fstat(m_spool.get(), &st) != 0) throw_errno("cannot stat the spool of " + m_name.filename().string());
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

std::uint64_t* IncomingFile::add_reader() {
  std::lock_guard<std::mutex> lock(m_mutex);
  return &m_readers.emplace_back(0);
}

void IncomingFile::remove_reader(std::uint64_t* reader) {
  {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_readers.remove_if([&](const std::uint64_t& r) { return &r == reader; });
  }
  m_room.notify_all();
}

void IncomingFile::drop_read_bytes(std::unique_lock<std::mutex>& lock) {
  if (!m_released || m_readers.empty()) return;
  const std::uint64_t floor = *std::min_element(m_readers.begin(), m_readers.end()) / kDropGranule * kDropGranule;
  if (floor <= m_dropped) return;
  const std::uint64_t from = m_dropped;
  m_dropped = floor;  // from now on a read there fails, before the bytes are gone
  lock.unlock();
  // Without hole punching (a file system that lacks it) the bytes stay on disk; they are dropped
  // all the same: no reader gets them.
  ::fallocate(m_spool.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from),
              static_cast<off_t>(floor - from));
  lock.lock();
}

std::size_t IncomingFile::read(std::uint64_t* reader, std::uint64_t offset, std::span<char> buf,
                               const std::atomic<bool>* stop) {
  check_interrupted();  // as every Source of a file does: a restore stops at its next read
  std::uint64_t available;
  {
    std::unique_lock<std::mutex> lock(m_mutex);
    if (offset < m_dropped) throw read_after_drop(m_name);
    for (;;) {
      if (m_failure) std::rethrow_exception(m_failure);
      if (offset < m_arrived) break;
      if (m_complete) return 0;
      // A signal, or a consumer that went away, ends the wait: the writer may be slow or stuck.
      if (offset >= m_wanted) {
        m_wanted = offset + 1;
        m_room.notify_all();  // a writer holding back for the window goes on
      }
      m_grew.wait_for(lock, std::chrono::milliseconds(100));
      lock.unlock();
      check_interrupted();
      if (stop && *stop)
        throw Error(ErrorCode::interrupted, "stopped reading " + m_name.filename().string());
      lock.lock();
    }
    available = m_arrived - offset;
  }
  std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), available));
  std::size_t got;
  for (;;) {
    ssize_t n = ::pread(m_spool.get(), buf.data(), want, static_cast<off_t>(offset));
    if (n >= 0) {
      got = static_cast<std::size_t>(n);
      break;
    }
    if (errno != EINTR) throw_errno("cannot read the spool of " + m_name.filename().string());
  }
  if (!reader) {
    // Nobody held these bytes back: they count only if no drop reached them during the read.
    std::lock_guard<std::mutex> lock(m_mutex);
    if (offset < m_dropped) throw read_after_drop(m_name);
  } else {
    bool moved_on;
    {
      std::unique_lock<std::mutex> lock(m_mutex);
      *reader = offset + got;
      moved_on = m_released;
      if (moved_on) drop_read_bytes(lock);
    }
    if (moved_on) m_room.notify_all();
  }
  return got;
}

}  // namespace backupctl::io
