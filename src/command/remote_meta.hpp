// What push, fetch and the remote catalog (command/push.cpp, fetch.cpp, remote_catalog.cpp) share:
// reading a remote meta as the untrusted input it is, and the few facts taken from a meta.
// Internal to command/.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "catalog/meta.hpp"
#include "storage/remote.hpp"

namespace backupctl {

// What backupctl writes as a meta or a roles file is far smaller: anything larger on the remote is
// not read into memory.
inline constexpr std::uint64_t kRemoteMetaLimit = 1u << 20;
inline constexpr std::uint64_t kRemoteRolesLimit = 64u << 20;

bool is_set_name(const std::string& file);

bool encrypted(const Meta& meta);

// The companion files a meta names (a dump's roles file) that are beside `file`.
std::vector<std::filesystem::path> companions(const std::filesystem::path& file, const Meta& meta);

// What a roles file may be: the size its meta records, else the limit.
std::uint64_t roles_limit(const Meta& meta);

// A meta read from the remote: input someone else may have written. It must describe the file
// of that name, a backup name of that folder; anything larger than backupctl writes is not read.
Meta remote_meta(Remote& remote, const std::string& meta_name);

// The roles file a remote meta names, as a remote name beside its dump ("" when none). A name
// that is not a plain file name is reported, never followed.
std::string remote_roles(const Meta& meta, const std::string& backup_name);

// "sha256 ab12cd34…, made on host H at T": whose a backup is, from its meta.
std::string made_by(const Meta& meta);

// The ETag the meta records for its copy on `remote` ("" when none).
std::string copy_etag(const Meta& meta, const std::string& remote);

}  // namespace backupctl
