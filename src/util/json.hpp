// Reading JSON someone else may have written (metas, set files, journals, the run state, a
// manifest): a missing key, or a value of another type than expected, gives the fallback, never
// an exception from nlohmann's accessors, which would surface as an "internal error".
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace backupctl {

inline std::string json_string(const nlohmann::json& j, std::string_view key, std::string fallback = "") {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

inline bool json_bool(const nlohmann::json& j, std::string_view key, bool fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

inline double json_number(const nlohmann::json& j, std::string_view key, double fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

inline std::uint64_t json_uint(const nlohmann::json& j, std::string_view key, std::uint64_t fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : fallback;
}

// j[key] when it is an object, else an empty object.
inline const nlohmann::json& json_object(const nlohmann::json& j, std::string_view key) {
  static const nlohmann::json empty = nlohmann::json::object();
  if (!j.is_object()) return empty;
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : empty;
}

}  // namespace backupctl
