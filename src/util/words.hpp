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
// Only for commands backupctl makes itself: one from a setting may hold a token.
std::string join_words(const std::vector<std::string>& words);

// A command from a setting (SERVICE_STOP_CMD, STAGING_APP_START_CMD, ...) as logs, errors, plans,
// notifications and the state file show it: its program without its arguments, which may hold a
// token ("`appctl.sh` and 2 arguments").
std::string describe_command(const std::vector<std::string>& argv);

// `text` (a command's own output, quoted in an error) with each of the command's arguments of six
// characters or more replaced by "***": a command that echoes its arguments repeats the token.
std::string redact_arguments(std::string text, const std::vector<std::string>& argv);

// The sha256 of a command (its words, NUL-separated), what a journal keeps of a command from a
// setting: the repair compares it with the configuration's without holding the words.
std::string command_digest(const std::vector<std::string>& argv);

}  // namespace backupctl
