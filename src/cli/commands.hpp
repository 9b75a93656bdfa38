// The commands behind the command line: each takes the validated Config and the parsed
// arguments, prints its result (human or --json) and returns the exit status. Commands that change
// things run under the BACKUP_DIR lock and leave a record (run state, metrics file, notification).
#pragma once

#include <string>
#include <vector>

#include "cli/output.hpp"
#include "command/restore_db.hpp"
#include "command/repair.hpp"
#include "command/restore_objects.hpp"
#include "config/config.hpp"

namespace backupctl {

struct Args {
  OutputOptions out;
  std::string env_file;
  std::string backup_dir;
  std::string profile;
  // verify
  std::vector<std::string> files;
  bool all = false;
  bool latest = false;
  bool quick = false;
  // list
  std::string kind;
  // restore
  RestoreDbOptions restore;
  RestoreObjectsOptions restore_objects;
  std::string config_file;
  std::string config_mode = "preview";
  std::string set = "latest";
  bool confirm = false;
  // prune
  bool dry_run = false;
  bool wrong_clock = false;  // prune --wrong-clock
  // schedule
  bool cron = false;
  bool systemd = false;
  std::string time = "03:15";
  std::string self;  // argv[0], resolved
  // off-site copies
  bool remote = false;     // --remote: list, verify, restore, rehearse from BACKUP_REMOTE_URL
  bool no_remote = false;  // backup --no-remote: no off-site copy this time
  bool read_data = false;  // verify --remote --read-data
  std::string push_set;    // push --set ID
  bool take_over = false;  // push --take-over: this BACKUP_DIR writes to the remote from now on
  // repair
  bool discard = false;
  RepairOutcome repair;  // what the repair at start-up found and did
};

int cmd_backup_db(const Config& config, const Args& args);
int cmd_backup_objects(const Config& config, const Args& args);
int cmd_backup_config(const Config& config, const Args& args);
int cmd_backup_all(const Config& config, const Args& args);
int cmd_verify(const Config& config, const Args& args);
int cmd_list(const Config& config, const Args& args);
int cmd_restore_db(const Config& config, const Args& args);
int cmd_restore_objects(const Config& config, const Args& args);
int cmd_restore_config(const Config& config, const Args& args);
int cmd_restore_all(const Config& config, const Args& args);
int cmd_restore_undo(const Config& config, const Args& args);
int cmd_prune(const Config& config, const Args& args);
int cmd_status(const Config& config, const Args& args);
int cmd_schedule(const Config& config, const Args& args);
int cmd_check(const Config& config, const Args& args);
int cmd_rehearse(const Config& config, const Args& args);
int cmd_repair(const Config& config, const Args& args);
int cmd_push(const Config& config, const Args& args);

}  // namespace backupctl
