// How a long copy reports how far it got. The CLI shows it on a terminal; tests and scripts
// pass NoProgress.
#pragma once

#include <cstdint>
#include <string_view>

namespace backupctl {

class Progress {
 public:
  virtual ~Progress() = default;
  virtual void start(std::string_view /*label*/) {}
  virtual void update(std::uint64_t /*bytes*/) {}
  virtual void finish() {}
};

class NoProgress : public Progress {};

}  // namespace backupctl
