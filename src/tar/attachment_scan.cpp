#include "tar/attachment_scan.hpp"

#include <fmt/format.h>

#include <map>
#include <optional>
#include <set>

#include "io/age.hpp"
#include "io/read_ahead.hpp"
#include "tar/tar.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"

namespace backupctl {

using nlohmann::json;

namespace {

// Every object the manifest names is in the tar, at the path its bucket and key give, with the
// manifest's size and sha256; nothing else is. `seen`: path -> size, sha256 of every entry.
void check_against_manifest(const Manifest& manifest,
                            const std::map<std::string, std::pair<std::uint64_t, std::string>>& seen) {
  std::set<std::string> named;
  for (const ManifestObject& o : manifest.objects) {
    // The path is derived from bucket and key, never taken from the archive: a crafted manifest
    // cannot steer a file outside its folder.
    if (o.path != tar_path(o.bucket, o.key)) {
      throw Error(ErrorCode::verification, "the manifest maps " + o.bucket + "/" + o.key + " to " + o.path,
                  "refusing an archive whose paths do not follow from its keys");
    }
    auto it = seen.find(o.path);
    if (it == seen.end()) {
      throw Error(ErrorCode::verification, "the archive lacks " + o.bucket + "/" + o.key + " (" + o.path + ")",
                  "the file is incomplete; use another backup");
    }
    if (it->second.first != o.size || it->second.second != o.sha256) {
      throw Error(ErrorCode::verification, "the archive's copy of " + o.bucket + "/" + o.key + " does not match its manifest",
                  "the file is damaged; use another backup");
    }
    named.insert(o.path);
  }
  for (const auto& [path, _] : seen) {
    if (!named.count(path)) {
      throw Error(ErrorCode::verification, "the archive holds " + path + ", which its manifest does not name",
                  "refusing it: it was not written by backupctl, or was altered");
    }
  }
}

}  // namespace

AttachmentTarScan scan_attachment_tar(const std::string& file, Progress& progress,
                                      const std::filesystem::path& identity) {
  const bool encrypted = io::is_encrypted(file);
  std::optional<io::FileDigest> stored;
  if (encrypted) stored = io::digest_file(file);
  std::unique_ptr<io::Source> plain = io::open_plaintext(file, identity);
  io::Source& raw = *plain;
  io::HashingReadAhead hashing(raw, progress);

  AttachmentTarScan scan;
  std::map<std::string, std::pair<std::uint64_t, std::string>> seen;  // path -> size, sha256
  bool have_manifest = false;
  {
    TarReader reader(hashing);
    TarEntry entry;
    std::vector<char> buf(1 << 20);
    while (reader.next(entry)) {
      if (have_manifest) {
        throw Error(ErrorCode::verification, "the archive has entries after its manifest: " + entry.path,
                    "it was not written by backupctl, or was altered");
      }
      if (!entry.regular) {
        throw Error(ErrorCode::verification,
                    fmt::format("the archive holds a {} ({}); backupctl archives hold only files", entry.type, entry.path),
                    "refusing it: links could point outside the target");
      }
      if (entry.path == kManifestPath) {
        std::string text;
        for (std::size_t n; (n = reader.read(buf)) > 0;) text.append(buf.data(), n);
        json j = json::parse(text, nullptr, false);
        if (j.is_discarded()) throw Error(ErrorCode::verification, "the archive's manifest is not JSON", "use another backup");
        scan.manifest = Manifest::from_json(j);
        have_manifest = true;
        continue;
      }
      io::NullSink null;
      io::Sha256Sink sha(null);
      std::uint64_t size = 0;
      for (std::size_t n; (n = reader.read(buf)) > 0;) {
        sha.write(std::span<const char>(buf.data(), n));
        size += n;
      }
      sha.finish();
      if (!seen.emplace(entry.path, std::make_pair(size, sha.hex())).second) {
        throw Error(ErrorCode::verification, "the archive holds " + entry.path + " twice", "use another backup");
      }
      scan.object_bytes += size;
    }
  }
  scan.sha256 = hashing.finish();
  scan.size = hashing.total();
  if (encrypted) {
    scan.sha256 = stored->sha256;
    scan.size = stored->size;
  }
  if (!have_manifest) {
    throw Error(ErrorCode::verification, "the archive has no manifest (it ends early?)",
                "the file is incomplete; use another backup");
  }
  check_against_manifest(scan.manifest, seen);
  return scan;
}

}  // namespace backupctl
