#include "catalog/health.hpp"

#include "util/json.hpp"

namespace backupctl {

const nlohmann::json* copy_record(const Meta& meta, const std::string& url) {
  auto it = meta.other.find("remote_copies");
  if (it == meta.other.end() || !it->is_object()) return nullptr;
  auto r = it->find(url);
  return r != it->end() && r->is_object() ? &*r : nullptr;
}

std::optional<Clock::time_point> copied_at(const CatalogEntry& e, const std::string& url) {
  const nlohmann::json* r = e.meta ? copy_record(*e.meta, url) : nullptr;
  if (!r) return std::nullopt;
  // A record without a readable time is still a copy (it went up): dated at the epoch.
  return parse_iso8601(json_string(*r, "at")).value_or(Clock::time_point{});
}

bool needs_remote_copy(const Config& config, const CatalogEntry& e, Clock::time_point now) {
  if (!config.remote || !e.meta || e.damaged()) return false;
  if (e.time < now - std::chrono::hours(24) * config.remote->retention_days) return false;
  return !copied_at(e, config.remote->url);
}

CatalogHealth catalog_health(const Config& config, const std::vector<CatalogEntry>& entries, Clock::time_point now) {
  CatalogHealth h;
  for (Kind k : {Kind::db, Kind::objects, Kind::config}) h.kinds[k];
  if (config.wal_stream) h.kinds[Kind::base];
  for (const CatalogEntry& e : entries) {  // newest first
    auto& k = h.kinds[e.kind];
    ++k.count;
    if (e.wrong_clock(now)) {
      h.wrong_clock.push_back(&e);
      continue;
    }
    // Damaged (its size is not the meta's) or failed its last verify: not good, whatever it was.
    const bool good = e.meta && !e.damaged() && !(e.meta->verification && !e.meta->verification->ok);
    if (good && !k.newest_good) k.newest_good = &e;
    if (!config.remote) continue;
    if (needs_remote_copy(config, e, now)) h.not_on_remote.push_back(&e);
    // A copy recorded by a wrong clock is not the newest either.
    if (auto at = copied_at(e, config.remote->url); at && !dated_in_future(*at, now) && (!h.newest_copy || *at > h.newest_copy_at)) {
      h.newest_copy = &e;
      h.newest_copy_at = *at;
    }
  }
  return h;
}

}  // namespace backupctl
