// `backupctl backup config`: the files of CONFIG_PATHS (infra/env, infra/docker-compose.yml,
// infra/monitoring by default), relative to APP_ROOT, as config/config_<ts>.tar.gz (pax tar:
// modes, owners and mtimes kept, symbolic links stored as links and never followed).
#pragma once

#include <string>

#include "command/backup_db.hpp"

namespace backupctl {

struct BackupConfigOptions {
  std::string set_id;
};

BackupResult backup_config(const Config& config, Progress& progress, const BackupConfigOptions& options = {});

}  // namespace backupctl
