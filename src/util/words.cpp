#include "util/digest.hpp"
#include "util/words.hpp"


#include "util/encoding.hpp"

#include "util/error.hpp"

namespace backupctl {

std::vector<std::string> split_words(std::string_view text, std::string_view setting) {
  std::vector<std::string> words;
  std::string current;
  bool in_word = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(current));
      current.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\'') {
      auto end = text.find('\'', i + 1);
      if (end == std::string_view::npos) {
        throw Error(ErrorCode::usage, "unterminated ' in " + std::string(setting),
                    "quote arguments with matching quotes");
      }
      current.append(text.substr(i + 1, end - i - 1));
      i = end;
    } else if (c == '"') {
      std::size_t j = i + 1;
      for (; j < text.size() && text[j] != '"'; ++j) {
        if (text[j] == '\\' && j + 1 < text.size() && (text[j + 1] == '"' || text[j + 1] == '\\')) ++j;
        current += text[j];
      }
      if (j >= text.size()) {
        throw Error(ErrorCode::usage, "unterminated \" in " + std::string(setting),
                    "quote arguments with matching quotes");
      }
      i = j;
    } else if (c == '\\' && i + 1 < text.size()) {
      current += text[++i];
    } else {
      current += c;
    }
  }
  if (in_word) words.push_back(std::move(current));
  if (words.empty()) {
    throw Error(ErrorCode::usage, std::string(setting) + " is empty",
                "give the command to run, e.g. " + std::string(setting) + "='systemctl stop archive-api'");
  }
  return words;
}

std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::string describe_command(const std::vector<std::string>& argv) {
  if (argv.empty()) return "(no command)";
  const std::string& program = argv.front();
  const auto slash = program.rfind('/');
  const std::size_t n = argv.size() - 1;
  return "`" + (slash == std::string::npos ? program : program.substr(slash + 1)) + "`" +
         (n == 0 ? "" : " and " + std::to_string(n) + (n == 1 ? " argument" : " arguments"));
}

std::string redact_arguments(std::string text, const std::vector<std::string>& argv) {
  for (std::size_t i = 1; i < argv.size(); ++i) {
    const std::string& w = argv[i];
    if (w.size() < 6) continue;
    for (auto at = text.find(w); at != std::string::npos; at = text.find(w, at + 3)) text.replace(at, w.size(), "***");
  }
  return text;
}

std::string command_digest(const std::vector<std::string>& argv) {
  std::string joined;
  for (const auto& w : argv) joined.append(w).push_back('\0');
  return digest_hex(DigestKind::sha256, joined);
}

}  // namespace backupctl
