// Human-readable numbers for progress lines and tables.
#pragma once

#include <cstdint>
#include <string>

namespace backupctl {

// "0 B", "512 B", "1.5 KiB", "403.2 MiB", "1.02 GiB".
std::string human_bytes(std::uint64_t bytes);

// "0.4 s", "12.3 s", "4m05s", "1h02m".
std::string human_duration(double seconds);

}  // namespace backupctl
