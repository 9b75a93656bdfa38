#include "command/remote_owner.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "io/pipeline.hpp"
#include "util/encoding.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/process.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kOwnerLimit = 64u << 10;  // what we write is a few hundred bytes

bool is_id(const std::string& s) {
  return s.size() == 32 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

struct Owner {
  std::string id, host, backup_dir, since;
  std::string describe() const {
    return "host " + (host.empty() ? "?" : host) + " (BACKUP_DIR " + (backup_dir.empty() ? "?" : backup_dir) +
           ", id " + id.substr(0, 8) + (since.empty() ? "" : ", since " + since) + ")";
  }
};

// The owner the remote names; nullopt when it names none. A file there that does not read is an
// owner we do not know (refused like another's: only --take-over replaces it).
std::optional<Owner> remote_owner(Remote& remote) {
  io::StringSink sink;
  io::LimitSink limited(sink, kOwnerLimit, std::string(kRemoteOwnerName) + " on the remote");
  try {
    remote.get(kRemoteOwnerName, limited);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::not_found) return std::nullopt;
    throw;
  }
  auto j = nlohmann::json::parse(sink.data(), nullptr, false);
  Owner o;
  if (j.is_object()) {
    o = {json_string(j, "id"), json_string(j, "host"), json_string(j, "backup_dir"), json_string(j, "claimed_at")};
  }
  if (!is_id(o.id)) o.id = "unreadable";
  return o;
}

void claim(const Config& config, Remote& remote, const std::string& id) {
  nlohmann::json j = {{"format", 1},
                      {"id", id},
                      {"host", machine_hostname()},
                      {"backup_dir", config.backup_dir.string()},
                      {"claimed_at", iso8601(Clock::now())}};
  // Remote::put copies a file by name: a memory file's (nothing to leave behind if killed).
  MemFile file("backupctl-owner");
  const std::string text = j.dump(2) + "\n";
  write_all(file.fd(), text.data(), text.size(), "cannot write the owner record");
  std::atomic<std::uint64_t> sent{0};
  remote.put("/proc/self/fd/" + std::to_string(file.fd()), kRemoteOwnerName, "", sent);
}

}  // namespace

std::string backup_dir_id(const fs::path& backup_dir) {
  make_dirs(backup_dir);
  const fs::path file = backup_dir / ".backupctl-id";
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(file, ec))) {
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1) throw Error(ErrorCode::internal, "cannot make a random id", "");
    const std::string id = hex_encode(raw, sizeof raw);
    // O_EXCL: two first runs at once agree on the one that got there first.
    Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd) {
      const std::string line = id + "\n";
      if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fsync(fd.get()) != 0) {
        throw_errno("cannot write " + file.string());
      }
      fsync_dir(backup_dir);
      return id;
    }
    if (errno != EEXIST) throw_errno("cannot create " + file.string());
  }
  if (!fs::is_regular_file(fs::symlink_status(file, ec))) {
    throw Error(ErrorCode::usage, file.string() + " is not a regular file", "remove it; the next push makes a new one");
  }
  std::string id = read_file(file);
  while (!id.empty() && (id.back() == '\n' || id.back() == '\r')) id.pop_back();
  if (!is_id(id)) {
    throw Error(ErrorCode::usage, file.string() + " does not hold an id (32 hex digits)",
                "it was changed; restore it from a copy of BACKUP_DIR, or remove it and `backupctl push --take-over`");
  }
  return id;
}

bool owns_remote(const Config& config, Remote& remote) {
  std::optional<Owner> owner = remote_owner(remote);
  if (owner && owner->id == backup_dir_id(config.backup_dir)) return true;
  spdlog::warn("remote: {} is {}: its retention is left to its writer",
               config.remote->describe(), owner ? "written by another BACKUP_DIR: " + owner->describe() : std::string("claimed by no push yet"));
  return false;
}

void require_remote_owner(const Config& config, Remote& remote, TakeOver take_over) {
  const std::string id = backup_dir_id(config.backup_dir);
  std::optional<Owner> owner = remote_owner(remote);
  if (owner && owner->id == id) return;
  if (!owner && take_over == TakeOver::no) {
    // A remote with backups and no owner was written by a version before the claim: it is this
    // BACKUP_DIR's when it holds a backup of a name this one has (a host rebuilt from the remote
    // has those it fetched), never a stranger's (a staging copy of prod's settings).
    bool any = false, ours = false;
    for (const auto& [name, f] : remote.list()) {
      if (!name.ends_with(".meta") || name.starts_with("sets/")) continue;
      any = true;
      std::error_code ec;
      ours = ours || fs::exists(fs::symlink_status(config.backup_dir / name.substr(0, name.size() - 5), ec));
    }
    if (any && !ours) {
      throw Error(ErrorCode::usage,
                  config.remote->describe() + " holds backups this BACKUP_DIR did not make, and names no writer "
                  "(an older backupctl wrote them)",
                  "give this host a BACKUP_REMOTE_URL of its own; if it is the one that writes there: "
                  "backupctl push --take-over");
    }
  }
  if (owner && take_over == TakeOver::no) {
    throw Error(ErrorCode::usage,
                config.remote->describe() + " is written by another BACKUP_DIR: " + owner->describe() +
                    "; two hosts pushing to one remote overwrite each other's backups",
                "give each host a BACKUP_REMOTE_URL of its own; if this host replaces that one (rebuilt from the "
                "remote): backupctl push --take-over");
  }
  if (owner) spdlog::warn("remote: {} was written by {}; this BACKUP_DIR takes it over (--take-over)", config.remote->describe(), owner->describe());
  claim(config, remote, id);
  // Two first pushes at once: the remote keeps one claim; the other push stops here.
  std::optional<Owner> now = remote_owner(remote);
  if (!now || now->id != id) {
    throw Error(ErrorCode::usage,
                config.remote->describe() + " was claimed at the same moment by another BACKUP_DIR: " +
                    (now ? now->describe() : std::string("unknown")),
                "give each host a BACKUP_REMOTE_URL of its own");
  }
  spdlog::info("remote: {} is written by this BACKUP_DIR (id {}) from now on", config.remote->describe(), id.substr(0, 8));
}

}  // namespace backupctl
