#include "catalog/lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/time.hpp"

namespace backupctl {

BackupLock BackupLock::acquire(const std::filesystem::path& backup_dir, const std::string& command) {
  make_dirs(backup_dir, 0700);
  std::filesystem::path path = backup_dir / ".backupctl.lock";
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) throw_errno("cannot open the lock " + path.string());
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) throw_errno("cannot lock " + path.string());
    std::string holder = read_file(path);
    for (char& c : holder) {
      if (c == '\n') c = ' ';
    }
    while (!holder.empty() && holder.back() == ' ') holder.pop_back();
    throw Error(ErrorCode::locked,
                "another backupctl run holds " + path.string() +
                    (holder.empty() ? std::string() : " (" + holder + ")"),
                "one backup or restore at a time per BACKUP_DIR; wait for it to finish (the lock goes "
                "away by itself if that process dies)");
  }
  std::string who = "pid=" + std::to_string(::getpid()) + "\ncommand=" + command +
                    "\nsince=" + iso8601(Clock::now()) + "\n";
  if (::ftruncate(fd.get(), 0) == 0) {
    ::lseek(fd.get(), 0, SEEK_SET);
    write_all(fd.get(), who.data(), who.size(), "cannot write " + path.string());
  }
  return BackupLock(std::move(fd));
}

}  // namespace backupctl
