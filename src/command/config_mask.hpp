// What an operator sees of a config file: its secret-looking values masked, and the masked diff
// of two versions (the restore-config preview).
#pragma once

#include <string>

namespace backupctl {

// Masks the values of secret-looking names (PASS, PWD, SECRET, TOKEN, KEY, CREDENTIAL, AUTH,
// PRIVATE, SALT, DSN, COOKIE anywhere in the name) in every syntax a config file uses (env files,
// compose maps and lists, JSON, quoted or not, command-line flags), passwords in URLs with or
// without a user, YAML block values of such names, and PEM private keys.
// When `other` (the side before, in a diff) holds a different value for the same key, the line
// gets a "# (secret changed)" note, so the diff shows it without showing the values. For tests too.
std::string mask_secrets(const std::string& text, const std::string& other = "");

// The unified diff (diff -u) of `before` and `after` of the file `path` (null: absent), both sides
// masked; "Binary file … differs" for binary content.
std::string masked_diff(const std::string& path, const std::string* before, const std::string* after);

}  // namespace backupctl
