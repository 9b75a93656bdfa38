#include "service/service.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "service/compose.hpp"
#include "util/error.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"
#include "util/words.hpp"

namespace backupctl {
namespace {


// Runs one control command; stdout and stderr go to our stderr so the operator sees them.
void run_control(const std::vector<std::string>& argv, const char* what) {
  spdlog::info("services: {}", join_words(argv));
  RunResult r = run_command({.argv = argv});
  if (!r.out.empty()) spdlog::info("services: {}", last_lines(r.out, 5));
  if (!r.status.ok()) {
    throw Error(ErrorCode::tool_failed,
                std::string("cannot ") + what + " the services: `" + join_words(argv) + "` " +
                    r.status.describe() + ": " + first_line(last_lines(r.err, 1)),
                "check the command by hand; SERVICE_CONTROL selects how services are controlled");
  }
}

class ArgvController : public ServiceController {
 public:
  ArgvController(std::vector<std::string> stop, std::vector<std::string> start)
      : m_stop(std::move(stop)), m_start(std::move(start)) {}
  void stop() override { run_control(m_stop, "stop"); }
  void start() override { run_control(m_start, "start"); }
  std::string describe_stop() const override { return join_words(m_stop); }
  std::vector<std::string> start_argv() const override { return m_start; }

 private:
  std::vector<std::string> m_stop, m_start;
};

class NoController : public ServiceController {
 public:
  void stop() override {}
  void start() override {}
  std::string describe_stop() const override { return "nothing (SERVICE_CONTROL=none)"; }
  bool does_nothing() const override { return true; }
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::unique_ptr<ServiceController> make_service_controller(const Config& config) {
  switch (config.service_control) {
    case ServiceControl::compose: {
      std::error_code ec;
      if (!std::filesystem::exists(config.compose_file, ec)) {
        throw Error(ErrorCode::usage,
                    "SERVICE_CONTROL=compose but " + config.compose_file.string() + " does not exist",
                    "set COMPOSE_FILE, or SERVICE_CONTROL=systemd|command|none");
      }
      auto cmd = [&](const char* verb) {
        std::vector<std::string> rest = {verb};
        rest.insert(rest.end(), config.app_services.begin(), config.app_services.end());
        return compose_argv(config, rest);
      };
      return std::make_unique<ArgvController>(cmd("stop"), cmd("start"));
    }
    case ServiceControl::systemd: {
      auto cmd = [&](const char* verb) {
        std::vector<std::string> argv = {"systemctl", verb};
        argv.insert(argv.end(), config.app_services.begin(), config.app_services.end());
        return argv;
      };
      return std::make_unique<ArgvController>(cmd("stop"), cmd("start"));
    }
    case ServiceControl::command:
      return std::make_unique<ArgvController>(config.service_stop_cmd, config.service_start_cmd);
    case ServiceControl::none:
      return std::make_unique<NoController>();
  }
  return std::make_unique<NoController>();
}

ServicesStopped::ServicesStopped(ServiceController& controller, Journal& journal) : m_controller(controller) {
  if (!m_controller.does_nothing()) {
    m_entry = journal.add("services", {{"describe", m_controller.describe_stop()}, {"start", m_controller.start_argv()}});
  }
  try {
    m_controller.stop();
  } catch (...) {
    // Some services may have stopped before the failure: bring them back before giving up.
    InterruptShield shield;
    try {
      m_entry.undo();
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
    }
    throw;
  }
  m_stopped_at = now_seconds();
}

void ServicesStopped::start_now() {
  m_down = now_seconds() - m_stopped_at;
  m_controller.start();
  m_entry.settle();
  spdlog::info("services: running again");
}

double ServicesStopped::seconds_down() const {
  return m_down >= 0 ? m_down : now_seconds() - m_stopped_at;
}

}  // namespace backupctl
