// Remote metas read as untrusted input, and what push, fetch and the catalog take from them.
#include "command/remote_meta.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cerrno>
#include <map>
#include <mutex>
#include <set>

#include "catalog/health.hpp"
#include "catalog/naming.hpp"
#include "command/prune.hpp"
#include "command/remote_owner.hpp"
#include "command/sets.hpp"
#include "command/verify.hpp"
#include "io/atomic_file.hpp"
#include "io/pipeline.hpp"
#include "util/env.hpp"
#include "util/error.hpp"
#include "util/fault.hpp"
#include "util/format.hpp"
#include "util/fs.hpp"
#include "util/json.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace backupctl {

namespace fs = std::filesystem;


bool is_set_name(const std::string& file) {
  return file.starts_with("set_") && file.ends_with(".json") && file.find('/') == std::string::npos;
}

bool encrypted(const Meta& meta) { return meta.other.contains("encryption"); }

// The companion files a meta names (a dump's roles file) that are beside `file`.
std::vector<fs::path> companions(const fs::path& file, const Meta& meta) {
  std::vector<fs::path> out;
  if (meta.parts.contains("roles")) {
    if (auto roles = meta_part_file(file, meta, "roles")) out.push_back(*roles);
  }
  return out;
}

// What a roles file may be: the size its meta records, else the limit.
std::uint64_t roles_limit(const Meta& meta) {
  if (meta.parts.contains("roles") && meta.parts["roles"].is_object()) {
    return std::min<std::uint64_t>(json_uint(meta.parts["roles"], "size", kRemoteRolesLimit), kRemoteRolesLimit);
  }
  return kRemoteRolesLimit;
}

Meta remote_meta(Remote& remote, const std::string& meta_name) {
  io::StringSink sink;
  io::LimitSink limited(sink, kRemoteMetaLimit, meta_name + " on the remote");
  remote.get(meta_name, limited);
  auto j = nlohmann::json::parse(sink.data(), nullptr, false);
  if (j.is_discarded()) {
    throw Error(ErrorCode::verification, meta_name + " on the remote is not JSON", "push the backup again");
  }
  Meta meta = Meta::from_json(j, meta_name + " on the remote");
  std::string file = fs::path(meta_name).filename().string();
  file = file.substr(0, file.size() - 5);
  auto parsed = parse_backup_filename(file);
  std::string dir = meta_name.substr(0, meta_name.find('/'));
  if (meta.file != file || !parsed || std::string(kind_name(parsed->kind)) != dir) {
    throw Error(ErrorCode::verification, meta_name + " on the remote does not describe " + dir + "/" + file,
                "the remote's meta was changed; push the backup again");
  }
  return meta;
}

// The roles file a remote meta names, as a remote name beside its dump ("" when none). A name
// that is not a plain file name is reported, never followed.
std::string remote_roles(const Meta& meta, const std::string& backup_name) {
  if (!meta.parts.contains("roles") || !meta.parts["roles"].is_object()) return "";
  std::string roles = json_string(meta.parts["roles"], "file");
  if (roles.empty()) return "";
  std::string name = backup_name.substr(0, backup_name.find('/')) + "/" + roles;
  if (!remote_name_ok(name) || roles.ends_with(".meta") || name == backup_name) {
    throw Error(ErrorCode::verification, "the remote meta of " + backup_name + " names \"" + roles + "\" as its roles file: not followed",
                "the remote's meta was changed; push the backup again");
  }
  return name;
}

// "sha256 ab12cd34…, made on host H at T": whose a backup is, from its meta.
std::string made_by(const Meta& meta) {
  return "sha256 " + meta.sha256.substr(0, 12) + "…, made on host " + (meta.hostname.empty() ? "?" : meta.hostname) + " at " +
         (meta.created_at.empty() ? "?" : meta.created_at);
}



std::string copy_etag(const Meta& meta, const std::string& remote) {
  const nlohmann::json* r = copy_record(meta, remote);
  return r ? json_string(*r, "etag") : "";
}

}  // namespace backupctl
