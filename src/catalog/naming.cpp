#include "catalog/naming.hpp"

#include <fmt/format.h>

#include <random>
#include <regex>

namespace backupctl {

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::db: return "db";
    case Kind::objects: return "objects";
    case Kind::config: return "config";
    case Kind::base: return "base";
  }
  return "db";
}

std::optional<Kind> parse_kind(std::string_view name) {
  if (name == "db") return Kind::db;
  if (name == "objects") return Kind::objects;
  if (name == "config") return Kind::config;
  if (name == "base") return Kind::base;
  return std::nullopt;
}

std::string filename_safe(std::string_view text) {
  std::string out;
  for (char c : text) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-';
    out += ok ? c : '_';
  }
  if (out.empty() || out[0] == '.') out.insert(out.begin(), '_');
  return out;
}

std::string db_backup_filename(std::string_view database, std::string_view timestamp,
                               std::string_view suffix) {
  return fmt::format("archive_{}_{}{}", filename_safe(database), timestamp, suffix);
}

std::string roles_filename(std::string_view dump_filename) {
  auto parsed = parse_backup_filename(dump_filename);
  std::string base(dump_filename);
  if (parsed) {
    base = base.substr(0, base.size() - parsed->suffix.size() - (parsed->encrypted ? 4 : 0));
  }
  return base + ".roles.sql";
}

std::optional<ParsedName> parse_backup_filename(std::string_view filename) {
  static const std::regex db(R"(^archive_(.+)_(\d{8}_\d{6})(\.dump\.zst|\.dump|\.sql\.gz|\.sql)(\.age)?$)");
  static const std::regex objects(R"(^objects_(minio|disk)_(\d{8}_\d{6})(\.tar\.gz|\.tar\.zst|\.tar)(\.age)?$)");
  static const std::regex config(R"(^config_(\d{8}_\d{6})(\.tar\.gz)(\.age)?$)");
  static const std::regex base(R"(^base_(\d{1,20})_(\d{8}_\d{6})(\.tar\.zst)(\.age)?$)");
  std::string name(filename);
  std::smatch m;
  if (std::regex_match(name, m, db)) {
    return ParsedName{Kind::db, m[1], m[2], m[3], m[4].matched};
  }
  if (std::regex_match(name, m, objects)) {
    return ParsedName{Kind::objects, m[1], m[2], m[3], m[4].matched};
  }
  if (std::regex_match(name, m, config)) {
    return ParsedName{Kind::config, "", m[1], m[2], m[3].matched};
  }
  if (std::regex_match(name, m, base)) {
    return ParsedName{Kind::base, m[1], m[2], m[3], m[4].matched};
  }
  return std::nullopt;
}

std::string meta_filename(std::string_view backup_filename) {
  return std::string(backup_filename) + ".meta";
}

std::string new_set_id(Clock::time_point t) {
  std::random_device rd;
  return fmt::format("{}-{:04x}", name_timestamp(t), rd() & 0xffff);
}

}  // namespace backupctl
