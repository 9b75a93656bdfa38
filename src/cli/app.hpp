// The command line: parses arguments, loads the configuration, dispatches to a command and maps
// its outcome to an exit status (table in README.md).
#pragma once

namespace backupctl {

int run_cli(int argc, char** argv);

}  // namespace backupctl
