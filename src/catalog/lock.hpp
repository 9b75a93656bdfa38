// One backup or restore at a time per BACKUP_DIR: an flock on <BACKUP_DIR>/.backupctl.lock. The
// kernel releases it when the process dies, so a crash never leaves a stale lock. The holder writes
// who it is into the file, so a refused run can say who holds it.
#pragma once

#include <filesystem>
#include <string>

#include "util/fd.hpp"

namespace backupctl {

class BackupLock {
 public:
  // Takes the lock or throws Error(locked) at once, naming the holder's pid, command and start.
  static BackupLock acquire(const std::filesystem::path& backup_dir, const std::string& command);

  BackupLock(BackupLock&&) = default;
  BackupLock& operator=(BackupLock&&) = default;
  ~BackupLock() = default;  // closing the descriptor releases the flock

 private:
  explicit BackupLock(Fd fd) : m_fd(std::move(fd)) {}
  Fd m_fd;
};

}  // namespace backupctl
