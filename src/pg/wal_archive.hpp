// The WAL kept in BACKUP_DIR, one folder per cluster (the system identifier: WAL of another
// cluster is never mixed in):
//
//   wal/<system id>/<segment>.zst          a finished segment, zstd with its checksum
//                                          (`zstd -d` gives PostgreSQL's file back)
//   wal/<system id>/<tli>.history.zst      a timeline's history file
//   wal/<system id>/incoming/              the receiver's folder (pg/wal_receiver.hpp): finished files
//                                          until archived, the unfinished <segment>.partial
//
// A file is archived only when its first page says it is the segment its name says, of this
// cluster; one that is not is renamed <name>.rejected and named in a warning. An archived name is
// never replaced: the same name with other bytes is kept aside as <name>.conflict.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "pg/wal.hpp"

namespace backupctl {

class WalArchive {
 public:
  WalArchive(const std::filesystem::path& backup_dir, std::uint64_t system_identifier);

  std::uint64_t system_identifier() const { return m_sysid; }
  const std::filesystem::path& dir() const { return m_dir; }
  std::filesystem::path incoming() const { return m_dir / "incoming"; }

  // Archives every finished file in incoming/ (fsynced, then removed from there); returns the
  // names archived.
  std::vector<std::string> archive_incoming();

  // The finished segments kept (names, sorted: by timeline, then position): archived, or
  // finished in incoming/ and not archived yet.
  std::vector<std::string> segments() const;

  // The segment `name` (archived: decompressed; else from incoming/), checked, written to `to`
  // (created; mode 0600).
  // Throws Error(verification) when the archived file is damaged or not that segment.
  void restore_segment(const std::string& name, const std::filesystem::path& to) const;
  void restore_history(const std::string& name, const std::filesystem::path& to) const;

  // The unfinished segment `name` (incoming/<name>.partial) written to `to` under its full name
  // (what PostgreSQL asks for; the bytes not received yet are zeros, where replay ends). False,
  // with a warning, when its first page is not what its name says.
  bool restore_partial(const std::string& name, const std::filesystem::path& to) const;

  // The receiver's unfinished segment: its name (without .partial), when one is there.
  std::optional<std::string> partial() const;

  // The archived files ("<segment>.zst", "<tli>.history.zst"), sorted.
  std::vector<std::string> archived_files() const;

  // Takes in a WAL file that came from elsewhere (the remote): `data` is its plaintext, checked
  // like the receiver's (a segment's first page against its name and this cluster). An
  // unfinished segment (`partial`) goes to incoming/<name>.partial, where a restore looks for it.
  // Throws Error(verification) when it is not what its name says.
  void adopt(const std::string& name, const std::string& data, bool partial = false);

  // The archived segments before `first` (by position, whatever their timeline): the WAL no kept
  // base backup needs. Removed unless `dry_run`; returns their file names.
  std::vector<std::string> remove_before(const std::string& first, bool dry_run);

 private:
  bool archive_one(const std::filesystem::path& file);
  void store(const std::string& name, const std::string& data);

  std::uint64_t m_sysid;
  std::filesystem::path m_dir;
};

// Whether `name` is a segment file name (24 hex digits, upper case).
bool is_segment_name(const std::string& name);

// The system identifiers BACKUP_DIR holds WAL of.
std::vector<std::uint64_t> wal_clusters(const std::filesystem::path& backup_dir);

}  // namespace backupctl
