#include "command/config_mask.hpp"

#include <sys/stat.h>

#include <regex>
#include <utility>
#include <vector>

#include "util/fs.hpp"
#include "util/process.hpp"

namespace backupctl {

namespace {

// --- secret masking -----------------------------------------------------------------------------
//
// Any value whose name looks secret is masked, whatever the syntax: env files (KEY=value, export),
// compose maps (key: value) and lists (- KEY=value, ["KEY=value"]), JSON ("key": "value"), quoted
// or not; command-line flags (--db-password value, --token=x, ["--db-password", "x"]); passwords
// in URLs, with or without a user (redis://:pw@host); YAML block values (password: |) and PEM
// private keys. When unsure, mask: a masked non-secret costs a look at the file, a shown secret
// cannot be taken back.

const std::string kSecretWords = "(?:pass|pwd|secret|token|key|credential|auth|private|salt|dsn|cookie)";
const std::string kName = "[A-Za-z0-9_.\\-]*" + kSecretWords + "[A-Za-z0-9_.\\-]*";

// "KEY=value" / "key: value" as the whole line (after indentation, "- ", "export ", a quote).
const std::regex& whole_line() {
  static const std::regex re("^(\\s*(?:-\\s+)?(?:export\\s+)?([\"']?)" + kName + "[\"']?\\s*[:=]\\s*)(.*)$",
                             std::regex::icase);
  return re;
}

// "name=value" or "name: value" inside a line (a list of them, JSON on one line, a URL query).
const std::regex& inline_pair() {
  static const std::regex re("([\"']?" + kName + "[\"']?\\s*[:=]\\s*)(\"[^\"]*\"|'[^']*'|[^\\s,;&\"'}\\]]+)",
                             std::regex::icase);
  return re;
}

// A flag and its value: "--db-password value", "--token=x", "\"--db-password\", \"x\"".
const std::regex& flag_value() {
  static const std::regex re("(--?" + kName + "[\"']?(?:\\s*,\\s*[\"']?|\\s+[\"']?|=[\"']?))([^\\s\"',\\]]+)",
                             std::regex::icase);
  return re;
}

const std::regex& url_password() {
  static const std::regex re(R"(([A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)([^@\s/]+)@)");
  return re;
}

// Masks `value` keeping its quotes: "x" -> "****".
std::string masked_value(const std::string& value) {
  if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
    return std::string(1, value.front()) + "****" + value.back();
  }
  return "****";
}

// Replaces group `g` of every match of `re` in `line` with its masked value.
bool mask_all(std::string& line, const std::regex& re, int g) {
  std::string out;
  bool any = false;
  auto begin = std::sregex_iterator(line.begin(), line.end(), re);
  std::size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    out += line.substr(last, static_cast<std::size_t>(m.position(g)) - last);
    out += masked_value(m.str(g));
    last = static_cast<std::size_t>(m.position(g) + m.length(g));
    any = true;
  }
  if (!any) return false;
  line = out + line.substr(last);
  return true;
}

// Masks one line; returns whether it held a secret. `block` is set when the line opens a YAML
// block value (password: |) whose more indented lines follow.
bool mask_line(std::string& line, bool& block) {
  bool secret = false;
  std::smatch m;
  if (std::regex_match(line, m, whole_line())) {
    std::string value = m.str(3);
    std::string trail;
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == ',' || value.back() == '\r')) {
      trail.insert(trail.begin(), value.back());
      value.pop_back();
    }
    std::string quote = m.str(2);
    if (!quote.empty() && !value.empty() && value.back() == quote[0] &&
        !(value.size() >= 2 && value.front() == quote[0])) {
      trail.insert(0, quote);  // "KEY=value": the quote opened before the key
      value.pop_back();
    }
    if (value == "|" || value == ">" || value == "|-" || value == ">-" || value == "|+" || value == ">+") {
      block = true;
    } else if (!value.empty()) {
      line = m.str(1) + masked_value(value) + trail;
      secret = true;
    }
  } else {
    secret = mask_all(line, inline_pair(), 2) || secret;
  }
  secret = mask_all(line, flag_value(), 2) || secret;
  std::string masked = std::regex_replace(line, url_password(), "$1****@");
  secret = secret || masked != line;
  line = masked;
  return secret;
}

std::size_t indent_of(const std::string& line) {
  std::size_t n = line.find_first_not_of(" \t");
  return n == std::string::npos ? line.size() : n;
}

// Masks every line of `text`: lines holding a secret, the lines of a YAML block value of a secret
// key, and the body of a PEM private key. Returns the masked lines, in order.
std::vector<std::pair<std::string, bool>> mask_lines(const std::string& text) {
  std::vector<std::pair<std::string, bool>> out;  // line, held a secret
  std::istringstream in(text);
  bool pem = false;
  long block_indent = -1;  // >= 0: inside a YAML block value of a secret name
  for (std::string line; std::getline(in, line);) {
    if (pem) {
      if (line.find("-----END") != std::string::npos) {
        pem = false;
        out.emplace_back(line, false);
      } else {
        out.emplace_back(std::string(indent_of(line), ' ') + "****", true);
      }
      continue;
    }
    if (block_indent >= 0) {
      if (line.find_first_not_of(" \t") == std::string::npos || static_cast<long>(indent_of(line)) > block_indent) {
        out.emplace_back(line.find_first_not_of(" \t") == std::string::npos ? line : std::string(indent_of(line), ' ') + "****",
                         true);
        continue;
      }
      block_indent = -1;
    }
    if (line.find("-----BEGIN") != std::string::npos && line.find("PRIVATE KEY") != std::string::npos) {
      pem = true;
      out.emplace_back(line, true);
      continue;
    }
    bool block = false;
    std::string masked = line;
    bool secret = mask_line(masked, block);
    if (block) block_indent = static_cast<long>(indent_of(line));
    out.emplace_back(masked, secret || block);
  }
  return out;
}

}  // namespace

std::string mask_secrets(const std::string& text, const std::string& other) {
  // The other side's secret lines, by their masked form: when ours masks the same but its value
  // differs, say so, or the masked lines would look the same and a changed password would not
  // show in the diff.
  std::map<std::string, std::string> other_secrets;
  {
    std::istringstream raw(other);
    std::string line;
    for (const auto& [masked, secret] : mask_lines(other)) {
      std::getline(raw, line);
      if (secret) other_secrets[masked] = line;
    }
  }
  std::string out;
  std::istringstream raw(text);
  std::string line;
  for (const auto& [masked, secret] : mask_lines(text)) {
    std::getline(raw, line);
    std::string shown = masked;
    if (secret && !other.empty()) {
      auto it = other_secrets.find(masked);
      if (it != other_secrets.end() && it->second != line) shown += "  # (secret changed)";
    }
    out += shown + "\n";
  }
  if (!text.empty() && text.back() != '\n' && !out.empty()) out.pop_back();
  return out;
}

std::string masked_diff(const std::string& path, const std::string* before, const std::string* after) {
  auto binary = [](const std::string* s) { return s && s->find('\0') != std::string::npos; };
  if (binary(before) || binary(after)) return "Binary file " + path + " differs\n";
  // Mask both sides (each knowing the other, to say which secret changed), then let diff(1) do the
  // diffing in a private folder.
  TempDir tmp("backupctl-diff");
  ::chmod(tmp.path().c_str(), 0700);
  std::string a = before ? mask_secrets(*before) : "";
  std::string b = after ? mask_secrets(*after, before ? *before : "") : "";
  write_file_atomic(tmp.path() / "a", a, 0600);
  write_file_atomic(tmp.path() / "b", b, 0600);
  RunResult r = run_command({.argv = {"diff", "-u", "--label", before ? "current/" + path : "/dev/null",
                                      "--label", after ? "backup/" + path : "/dev/null",
                                      (tmp.path() / "a").string(), (tmp.path() / "b").string()}});
  return r.out;
}

}  // namespace backupctl
