// What the two remotes (s3_remote.cpp, folder_remote.cpp) share with remote.cpp: the names a
// remote holds, reading a local file at an offset, and the error of a file that changed since its
// meta. Internal to storage/.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "storage/remote.hpp"
#include "util/error.hpp"

namespace backupctl {

// The folders of a remote, below its root or prefix.
inline constexpr const char* kRemoteDirs[] = {"db", "objects", "config", "base", "sets"};

// Throws Error(internal) unless remote_name_ok(name): a name backupctl never makes is a bug.
void require_remote_name(const std::string& name);

// pread() until `n` bytes are read (or the end of the file).
std::size_t read_at(int fd, char* buf, std::size_t n, std::uint64_t offset, const std::filesystem::path& file);

std::uint64_t size_of(int fd, const std::filesystem::path& file);

// The error of a local file whose bytes no longer hash to its meta's sha256: not copied.
Error changed_since(const std::filesystem::path& local);

std::unique_ptr<Remote> make_s3_remote(const RemoteConfig& config);
std::unique_ptr<Remote> make_folder_remote(const RemoteConfig& config);

}  // namespace backupctl
