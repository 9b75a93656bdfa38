#include "util/error.hpp"

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace backupctl {

int exit_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::internal: return 1;
    case ErrorCode::usage: return 2;
    case ErrorCode::connection: return 3;
    case ErrorCode::not_found: return 4;
    case ErrorCode::verification: return 5;
    case ErrorCode::io: return 6;
    case ErrorCode::tool_failed: return 7;
    case ErrorCode::locked: return 8;
    case ErrorCode::confirmation_required: return 9;
    case ErrorCode::stale: return 10;
    case ErrorCode::check_failed: return 11;
    case ErrorCode::interrupted: return 130;
    case ErrorCode::repair_needed: return 12;
    case ErrorCode::wrong_clock: return 13;
  }
  return 1;
}

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::internal: return "internal";
    case ErrorCode::usage: return "usage";
    case ErrorCode::connection: return "connection";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::verification: return "verification";
    case ErrorCode::io: return "io";
    case ErrorCode::tool_failed: return "tool_failed";
    case ErrorCode::locked: return "locked";
    case ErrorCode::confirmation_required: return "confirmation_required";
    case ErrorCode::stale: return "stale";
    case ErrorCode::check_failed: return "check_failed";
    case ErrorCode::interrupted: return "interrupted";
    case ErrorCode::repair_needed: return "repair_needed";
    case ErrorCode::wrong_clock: return "wrong_clock";
  }
  return "internal";
}

Error errno_error(int err, std::string_view what) {
  std::string message = std::string(what) + ": " + std::strerror(err);
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return Error(ErrorCode::io, message,
                   "the file system is full or a file size limit (ulimit -f, quota) was hit; "
                   "free space or point BACKUP_DIR at a larger volume");
    case EACCES:
    case EPERM:
    case EROFS:
      return Error(ErrorCode::io, message,
                   "check the owner and mode of the directory, or point BACKUP_DIR elsewhere");
    case ENOENT:
      return Error(ErrorCode::not_found, message, "check the path");
    case ENOTDIR:
      return Error(ErrorCode::io, message, "a component of the path is a file, not a directory");
    default:
      return Error(ErrorCode::io, message);
  }
}

void throw_errno(std::string_view what) { throw errno_error(errno, what); }

bool best_effort(std::string_view what, const std::function<void()>& fn) {
  try {
    fn();
    return true;
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) throw;
    spdlog::warn("{}: {}", what, e.what());
    return false;
  }
}

}  // namespace backupctl
