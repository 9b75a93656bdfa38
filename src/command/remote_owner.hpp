// Which BACKUP_DIR writes to a remote. Two hosts pushing to one prefix (a staging copy of prod's
// env, a second server set up from the same notes) overwrite each other's copies made in the
// same second, and "latest" there mixes their backups. So the first push claims the remote for
// its BACKUP_DIR: `backupctl-owner.json` at the remote's root names the id kept in
// BACKUP_DIR/.backupctl-id, the host and the folder. A push or a remote prune from any other
// BACKUP_DIR is refused, naming the owner, until `push --take-over` says this one replaces it
// (the host rebuilt from the remote after the old one was lost). Reading the remote (list,
// verify, restore, rehearse --remote) needs no claim.
#pragma once

#include <filesystem>
#include <string>

#include "config/config.hpp"
#include "storage/remote.hpp"

namespace backupctl {

// This BACKUP_DIR's id (32 hex digits), made and kept in BACKUP_DIR/.backupctl-id on first use.
std::string backup_dir_id(const std::filesystem::path& backup_dir);

enum class TakeOver { no, yes };

// Claims the remote for this BACKUP_DIR when no one has, or checks that it is this one's; with
// TakeOver::yes, claims it from whoever had it (said in the log). Throws Error(usage) naming the
// owner when it is another BACKUP_DIR.
// A remote that names no writer and holds backups none of which this BACKUP_DIR has (written by a
// version before the claim, or by a stranger) is not claimed without TakeOver::yes.
void require_remote_owner(const Config& config, Remote& remote, TakeOver take_over = TakeOver::no);

// Whether the remote is this BACKUP_DIR's (claimed by it); says why not in a warning. What only
// the writer may do (the remote's retention) asks this and never claims.
bool owns_remote(const Config& config, Remote& remote);

}  // namespace backupctl
