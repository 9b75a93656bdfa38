// The docker compose front end of this host and the command lines built with it. Two exist:
// compose v2, the docker CLI plugin (`docker compose`), on current Docker installs; and v1, the
// Python `docker-compose` (1.29), the only one Debian 12 and older hosts package. Their command
// lines for what backupctl needs (stop, start, ps, exec -T, up -d, down) are the same.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"

namespace backupctl {

// COMPOSE_COMMAND when set; else `docker compose` when `docker compose version` works, else
// `docker-compose` when `docker-compose version` does (asked once per process). Throws
// Error(not_found) naming both and the fix when neither is there.
std::vector<std::string> compose_command(const Config& config);

// compose_command() + -f COMPOSE_FILE [+ -p COMPOSE_PROJECT_NAME] + `rest`; `project` overrides
// the project (a rehearsal's second instance of the stack).
std::vector<std::string> compose_argv(const Config& config, const std::vector<std::string>& rest,
                                      const std::string& project = "");

}  // namespace backupctl
