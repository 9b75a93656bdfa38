// Terminal and machine output: logs on stderr with timestamps, a live progress line when stderr
// is a terminal, JSON on stdout for scripts.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>

#include "util/error.hpp"
#include "util/progress.hpp"

namespace backupctl {

struct OutputOptions {
  bool json = false;
  bool quiet = false;
  bool verbose = false;
};

void setup_logging(const OutputOptions& options);

// A live "label  12.3 MiB  45.6 MiB/s  0:03" line on a terminal; nothing otherwise.
std::unique_ptr<Progress> make_progress(const OutputOptions& options);

void print_json(const nlohmann::json& value);

// "backupctl: error: ..." and "hint: ..." on stderr; with --json also {"ok":false,...} on stdout.
void report_error(const Error& error, const OutputOptions& options);

}  // namespace backupctl
