#include "catalog/meta.hpp"

#include "util/error.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"
#include "util/time.hpp"
#include "version.hpp"

namespace backupctl {

using nlohmann::json;

namespace {
const char* kKnown[] = {"meta_version", "kind",   "file",         "size",     "sha256",
                        "profile",      "created_at", "finished_at", "duration_seconds",
                        "set_id",       "tool",   "tool_version", "hostname", "format",
                        "compression",  "source", "parts",        "verification"};
}

json Meta::to_json() const {
  json j = other.is_object() ? other : json::object();
  j["meta_version"] = kVersion;
  j["kind"] = kind;
  j["file"] = file;
  j["size"] = size;
  j["sha256"] = sha256;
  j["profile"] = profile;
  j["created_at"] = created_at;
  j["finished_at"] = finished_at;
  j["duration_seconds"] = duration_seconds;
  j["set_id"] = set_id;
  j["tool"] = "backupctl";
  j["tool_version"] = tool_version;
  j["hostname"] = hostname;
  j["format"] = format;
  j["compression"] = compression;
  j["source"] = source;
  j["parts"] = parts;
  if (verification) {
    j["verification"] = {{"at", verification->at},
                         {"ok", verification->ok},
                         {"detail", verification->detail}};
  } else {
    j["verification"] = nullptr;
  }
  return j;
}

Meta Meta::from_json(const json& j, const std::string& origin) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::verification, "malformed meta " + origin + ": " + why,
                 "the .meta sidecar is damaged; `sha256sum` of the file and the dump itself may "
                 "still be usable");
  };
  if (!j.is_object()) throw bad("not a JSON object");
  Meta m;
  try {
    m.kind = j.at("kind").get<std::string>();
    m.file = j.at("file").get<std::string>();
    m.size = j.at("size").get<std::uint64_t>();
    m.sha256 = j.at("sha256").get<std::string>();
  } catch (const json::exception& e) {
    throw bad(e.what());
  }
  if (m.sha256.size() != 64) throw bad("sha256 is not 64 hex digits");
  auto str = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  m.profile = str("profile");
  m.created_at = str("created_at");
  m.finished_at = str("finished_at");
  m.set_id = str("set_id");
  m.tool_version = str("tool_version");
  m.hostname = str("hostname");
  m.format = str("format");
  m.compression = str("compression");
  if (auto it = j.find("duration_seconds"); it != j.end() && it->is_number()) {
    m.duration_seconds = it->get<double>();
  }
  if (auto it = j.find("source"); it != j.end() && it->is_object()) m.source = *it;
  if (auto it = j.find("parts"); it != j.end() && it->is_object()) m.parts = *it;
  if (auto it = j.find("verification"); it != j.end() && it->is_object()) {
    Verification v;
    v.at = it->value("at", "");
    v.ok = it->value("ok", false);
    v.detail = it->value("detail", "");
    m.verification = v;
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* k : kKnown) known = known || it.key() == k;
    if (!known) m.other[it.key()] = it.value();
  }
  return m;
}

Meta read_meta(const std::filesystem::path& path) {
  std::string text = read_file(path);
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    throw Error(ErrorCode::verification, "malformed meta " + path.string() + ": not valid JSON",
                "the .meta sidecar is damaged or was cut short");
  }
  return Meta::from_json(j, path.string());
}

void write_meta(const std::filesystem::path& path, const Meta& meta) {
  write_file_atomic(path, meta.to_json().dump(2) + "\n", 0600);
}

Meta new_backup_meta(std::string kind, const std::filesystem::path& file, std::uint64_t size,
                     std::string sha256, std::string profile, Clock::time_point created,
                     double duration_seconds, std::string set_id,
                     const std::vector<std::string>& age_recipients) {
  Meta meta;
  meta.kind = std::move(kind);
  meta.file = file.filename().string();
  meta.size = size;
  meta.sha256 = std::move(sha256);
  meta.profile = std::move(profile);
  meta.created_at = iso8601(created);
  meta.finished_at = iso8601(Clock::now());
  meta.duration_seconds = duration_seconds;
  meta.set_id = std::move(set_id);
  meta.tool_version = kVersion;
  meta.hostname = machine_hostname();
  if (!age_recipients.empty()) meta.other["encryption"] = {{"method", "age"}, {"recipients", age_recipients}};
  return meta;
}

}  // namespace backupctl
