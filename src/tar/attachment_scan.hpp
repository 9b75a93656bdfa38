// The check of an attachments tar before anything is restored from it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "tar/manifest.hpp"
#include "util/progress.hpp"

namespace backupctl {

// One pass over an objects archive: the file's sha256 and size, every entry a regular file at a
// path the manifest names (nothing outside its folders, no links), every object's sha256 and size
// equal to the manifest's, the manifest last. Throws Error(verification) naming the first problem.
struct AttachmentTarScan {
  std::uint64_t size = 0;
  std::string sha256;
  Manifest manifest;
  std::uint64_t object_bytes = 0;
};
// An encrypted archive (.age) is hashed as stored and read through `age -d -i identity`.
AttachmentTarScan scan_attachment_tar(const std::string& file, Progress& progress,
                                      const std::filesystem::path& identity = {});

}  // namespace backupctl
