// Splits a command line held in a setting (SERVICE_STOP_CMD, ...) into argv words, the way a shell
// would split words, but without running a shell: single quotes are literal, double quotes allow
// \" and \\, a backslash outside quotes escapes the next character. No variables, globs or pipes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace backupctl {

// Throws Error(usage) naming `setting` on an unterminated quote or an empty command.
std::vector<std::string> split_words(std::string_view text, std::string_view setting);

// The words joined by spaces, for logs and messages (not quoted: never run through a shell).
std::string join_words(const std::vector<std::string>& words);

}  // namespace backupctl
