// Fault injection for the crash tests: a run dies by SIGKILL at a named point, exactly as a power
// cut or `kill -9` would leave it.
//   BACKUPCTL_FAULT=<point>       SIGKILL ourselves when the run reaches <point>
//   BACKUPCTL_FAULT=<point>#<n>   ... the n-th time it reaches it (default: the first)
//   BACKUPCTL_FAULT_SIGNAL=TERM   ... send SIGTERM (or HUP, INT) instead: the run goes on to its
//                                 next check of the signal flag and stops as an operator's signal
//                                 would; STOP pauses it there (a test looks, then sends SIGCONT);
//                                 FAIL throws an error there (a step that fails)
//   BACKUPCTL_FAULT_LOG=<file>    append every point reached to <file>, one per line (how the
//                                 tests learn every point a command passes, so none is missed)
// The points are the journal's step names (catalog/journal.hpp) plus a few inside a step.
#pragma once

#include <string_view>

namespace backupctl {

void fault_point(std::string_view point);

}  // namespace backupctl
