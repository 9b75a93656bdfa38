// The WAL off-site (BACKUP_REMOTE_URL), beside the backups:
//
//   wal/<system id>/<segment>.zst[.age]            a finished segment, as archived here (zstd),
//                                                  encrypted with age when BACKUP_AGE_RECIPIENTS
//                                                  is set (a push refuses plaintext otherwise,
//                                                  as for backups)
//   wal/<system id>/<tli>.history.zst[.age]        a timeline's history
//   wal/<system id>/<segment>.partial.zst[.age]    the receiver's unfinished segment, replaced
//                                                  every WAL_PUSH_INTERVAL while it grows
//
// The local archive stays plaintext zstd (as PostgreSQL's own pg_wal is): a segment the receiver
// sends again is compared with it byte for byte, which an encrypted copy would not allow without
// the key. Encryption happens on the way out, into a spool folder of this process under the
// cluster's folder (.push-<pid>; those of processes that are gone are removed).
//
// The receiver (`wal stream`) pushes each segment as it is archived and the unfinished one on its
// interval; `push` sends what the receiver could not (a remote that was down, a receiver without
// the remote). The time everything received had reached the remote is kept in
// wal/<system id>/.remote.json: `status` reports the RPO off-site from it.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "pg/wal_archive.hpp"
#include "storage/remote.hpp"
#include "util/progress.hpp"
#include "util/time.hpp"

namespace backupctl {

// The remote's name of the local archive file `file` ("000000010000000000000003.zst"), as it is
// stored there (".age" added when encrypted).
std::string remote_wal_name(const Config& config, std::uint64_t sysid, const std::string& file);

// Whether the WAL can go to the remote as configured: encrypted, or plaintext allowed. The reason
// when it cannot.
std::optional<std::string> wal_push_refused(const Config& config);

class WalPusher {
 public:
  // REQUIRES: config.remote; `remote` outlives the pusher.
  WalPusher(const Config& config, Remote& remote, const WalArchive& archive);
  ~WalPusher();  // removes its spool folder
  WalPusher(const WalPusher&) = delete;
  WalPusher& operator=(const WalPusher&) = delete;

  // Copies each archived WAL file the remote lacks; returns their remote names. The remote is
  // listed on the first call; after that, what this pusher sent is known.
  std::vector<std::string> push_finished();

  // The receiver's unfinished segment, when it changed since the last call (and unless the
  // finished segment of that name is there): replaces the remote's, and removes the remote's
  // unfinished segments older than it. True when one was sent.
  bool push_partial();

  // Both, then the record of when everything received had reached the remote; returns the
  // remote names sent.
  std::vector<std::string> push_all();

 private:
  void put(const std::filesystem::path& local, const std::string& remote_name);
  void record(Clock::time_point received_by);
  // The remote is this BACKUP_DIR's (claimed when no one has; another's refused, as `push`
  // refuses it: its owner named, `push --take-over` the fix). Asked again every 5 minutes: a
  // receiver runs for months, and another host may take the remote over meanwhile.
  void claim();

  const Config& m_config;
  Remote& m_remote;
  const WalArchive& m_archive;
  std::optional<std::set<std::string>> m_there;  // remote names under wal/<id>/
  std::string m_partial_sent;                     // "<name> <size> <mtime>" of the last partial sent
  std::filesystem::path m_spool;                  // wal/<id>/.push-<pid>: this process's encrypted copies
  std::optional<std::chrono::steady_clock::time_point> m_claimed;  // when claim() last passed
};

// What .remote.json says: when everything received by then was on the remote, and which remote.
struct WalRemoteRecord {
  std::string remote;
  Clock::time_point received_by{};
};
std::optional<WalRemoteRecord> read_wal_remote_record(const WalArchive& archive);

// `push`: the WAL of every cluster in BACKUP_DIR the remote lacks (finished segments, histories,
// the unfinished segment). Returns the names sent; failures go to `failed` ("name: why").
std::vector<std::string> push_wal(const Config& config, Remote& remote, std::vector<std::string>& failed);

// The WAL of cluster `sysid` on the remote from segment `from` on (and the history files, and
// the newest unfinished segment when no finished one of its name is there), brought into the
// local archive (wal/<sysid>/, decrypted, checked like the receiver's files) unless there already.
// Returns how many files came.
std::size_t fetch_wal(const Config& config, Remote& remote, std::uint64_t sysid, const std::string& from,
                      Progress& progress);

// The remote's retention of WAL: for each cluster, the segments before the oldest base backup
// `kept_starts` names for it (its first segment) are removed. Returns the names removed (none in
// a dry run: the names that would be).
std::vector<std::string> prune_remote_wal(Remote& remote, const std::map<std::uint64_t, std::string>& first_kept,
                                          bool dry_run);

}  // namespace backupctl
