// Environment variables and env files (the KEY=VALUE format docker compose reads).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace backupctl {

// Parses an env file: KEY=VALUE lines, optional `export ` prefix, `#` comments, blank lines,
// values in single quotes (literal) or double quotes (\n, \", \\ escapes). Throws Error(usage)
// naming the file and line of a malformed entry. No variable interpolation.
std::vector<std::pair<std::string, std::string>> parse_env_file(std::string_view text,
                                                                std::string_view origin);

// Loads an env file into the process environment without overriding variables already set, as
// docker compose gives the shell environment precedence. Children inherit the values.
// REQUIRES: called before any thread starts.
void load_env_file(const std::filesystem::path& path);

// getenv as an optional; an empty value counts as unset.
std::optional<std::string> env_value(const char* name);

// Parses a whole decimal number in [min, max] taken from variable `name`; throws Error(usage)
// "invalid NAME=value: expected ..." otherwise.
std::int64_t parse_int_setting(std::string_view name, std::string_view value, std::int64_t min,
                               std::int64_t max);

// Parses yes/no style booleans (1/0, true/false, yes/no, on/off); throws Error(usage) otherwise.
bool parse_bool_setting(std::string_view name, std::string_view value);

}  // namespace backupctl
