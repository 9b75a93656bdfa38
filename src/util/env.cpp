#include "util/env.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>

#include "util/error.hpp"
#include "util/fs.hpp"

namespace backupctl {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool valid_key(std::string_view key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0]))) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

}  // namespace

std::vector<std::pair<std::string, std::string>> parse_env_file(std::string_view text,
                                                                std::string_view origin) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::string_view raw = text.substr(pos, nl == std::string_view::npos ? text.size() - pos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    std::string_view line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    if (line.substr(0, 7) == "export ") line = trim(line.substr(7));
    auto bad = [&](std::string_view why) {
      return Error(ErrorCode::usage,
                   std::string(origin) + ":" + std::to_string(line_no) + ": " + std::string(why),
                   "env files hold KEY=VALUE lines, as docker compose reads them");
    };
    auto eq = line.find('=');
    if (eq == std::string_view::npos) throw bad("expected KEY=VALUE");
    std::string key(trim(line.substr(0, eq)));
    if (!valid_key(key)) throw bad("invalid variable name '" + key + "'");
    std::string_view rest = trim(line.substr(eq + 1));
    std::string value;
    if (!rest.empty() && (rest[0] == '\'' || rest[0] == '"')) {
      char quote = rest[0];
      std::size_t i = 1;
      bool closed = false;
      for (; i < rest.size(); ++i) {
        char c = rest[i];
        if (c == quote) {
          closed = true;
          break;
        }
        if (quote == '"' && c == '\\' && i + 1 < rest.size()) {
          char n = rest[++i];
          value += n == 'n' ? '\n' : n;
          continue;
        }
        value += c;
      }
      if (!closed) throw bad("unterminated quote");
      std::string_view after = trim(rest.substr(i + 1));
      if (!after.empty() && after[0] != '#') throw bad("unexpected text after the closing quote");
    } else {
      // Unquoted: an inline comment starts at " #".
      auto hash = rest.find(" #");
      value = std::string(trim(rest.substr(0, hash)));
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

void load_env_file(const std::filesystem::path& path) {
  std::string text = read_file(path);
  for (const auto& [key, value] : parse_env_file(text, path.string())) {
    ::setenv(key.c_str(), value.c_str(), 0);
  }
}

std::optional<std::string> env_value(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::int64_t parse_int_setting(std::string_view name, std::string_view value, std::int64_t min,
                               std::int64_t max) {
  std::int64_t v = 0;
  std::string_view t = trim(value);
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || ptr != t.data() + t.size() || v < min || v > max) {
    throw Error(ErrorCode::usage,
                "invalid " + std::string(name) + "='" + std::string(value) +
                    "': expected a whole number from " + std::to_string(min) + " to " +
                    std::to_string(max),
                "fix or unset " + std::string(name));
  }
  return v;
}

bool parse_bool_setting(std::string_view name, std::string_view value) {
  std::string v(trim(value));
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  throw Error(ErrorCode::usage,
              "invalid " + std::string(name) + "='" + std::string(value) + "': expected yes or no",
              "use 1/0, true/false, yes/no or on/off");
}

}  // namespace backupctl
