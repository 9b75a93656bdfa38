#include "service/compose.hpp"

#include <spdlog/spdlog.h>

#include <mutex>
#include <optional>

#include "util/error.hpp"
#include "util/process.hpp"
#include "util/words.hpp"

namespace backupctl {

namespace {

bool answers(const std::vector<std::string>& argv) {
  std::vector<std::string> probe = argv;
  probe.push_back("version");
  try {
    return run_command({.argv = probe}).status.ok();
  } catch (const Error& e) {
    if (e.code() == ErrorCode::interrupted) throw;
    return false;  // not installed
  }
}

}  // namespace

std::vector<std::string> compose_command(const Config& config) {
  if (!config.compose_command.empty()) return config.compose_command;
  static std::mutex mutex;
  static std::optional<std::vector<std::string>> found;
  std::lock_guard<std::mutex> lock(mutex);
  if (!found) {
    for (std::vector<std::string> candidate : {std::vector<std::string>{"docker", "compose"},
                                               std::vector<std::string>{"docker-compose"}}) {
      if (answers(candidate)) {
        found = candidate;
        spdlog::debug("compose: using `{}`", join_words(candidate));
        break;
      }
    }
    if (!found) {
      throw Error(ErrorCode::not_found,
                  "SERVICE_CONTROL=compose but neither `docker compose` (compose v2) nor "
                  "`docker-compose` (v1) works here",
                  "install one (Debian 12: apt-get install docker-compose; Docker's packages: "
                  "docker-compose-plugin), "
                  "or set COMPOSE_COMMAND to the command that runs compose");
    }
  }
  return *found;
}

std::vector<std::string> compose_argv(const Config& config, const std::vector<std::string>& rest,
                                      const std::string& project) {
  std::vector<std::string> argv = compose_command(config);
  argv.push_back("-f");
  argv.push_back(config.compose_file.string());
  const std::string& p = project.empty() ? config.compose_project : project;
  if (!p.empty()) {
    argv.push_back("-p");
    argv.push_back(p);
  }
  argv.insert(argv.end(), rest.begin(), rest.end());
  return argv;
}

}  // namespace backupctl
