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


// Runs one control command (`shown`: how logs and errors name it); stdout and stderr go to our
// stderr so the operator sees them.
void run_control(const std::vector<std::string>& argv, const std::string& shown, const char* what) {
  spdlog::info("services: {} with {}", what, shown);
  RunResult r = run_command({.argv = argv});
  if (!r.out.empty()) spdlog::info("services: {}", redact_arguments(last_lines(r.out, 5), argv));
  if (!r.status.ok()) {
    throw Error(ErrorCode::tool_failed,
                std::string("cannot ") + what + " the services: " + shown + " " + r.status.describe() + ": " +
                    redact_arguments(first_line(last_lines(r.err, 1)), argv),
                "check the command by hand; SERVICE_CONTROL selects how services are controlled");
  }
}

// Whether a controller's commands may be shown whole: those backupctl makes (compose, systemctl)
// can; SERVICE_STOP_CMD / SERVICE_START_CMD may hold a token and show only their program.
enum class ShowArgs { yes, no };

class ArgvController : public ServiceController {
 public:
  ArgvController(std::vector<std::string> stop, std::vector<std::string> start, ShowArgs show)
      : m_stop(std::move(stop)), m_start(std::move(start)), m_show(show) {}
  void stop() override { run_control(m_stop, describe(m_stop), "stop"); }
  void start() override { run_control(m_start, describe(m_start), "start"); }
  std::string describe_stop() const override { return describe(m_stop); }
  std::string describe_start() const override { return describe(m_start); }
  std::vector<std::string> start_argv() const override { return m_start; }

 private:
  std::string describe(const std::vector<std::string>& argv) const {
    return m_show == ShowArgs::yes ? "`" + join_words(argv) + "`" : describe_command(argv);
  }
  std::vector<std::string> m_stop, m_start;
  ShowArgs m_show;
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
      return std::make_unique<ArgvController>(cmd("stop"), cmd("start"), ShowArgs::yes);
    }
    case ServiceControl::systemd: {
      auto cmd = [&](const char* verb) {
        std::vector<std::string> argv = {"systemctl", verb};
        argv.insert(argv.end(), config.app_services.begin(), config.app_services.end());
        return argv;
      };
      return std::make_unique<ArgvController>(cmd("stop"), cmd("start"), ShowArgs::yes);
    }
    case ServiceControl::command:
      return std::make_unique<ArgvController>(config.service_stop_cmd, config.service_start_cmd, ShowArgs::no);
    case ServiceControl::none:
      return std::make_unique<NoController>();
  }
  return std::make_unique<NoController>();
}

ServicesStopped::ServicesStopped(ServiceController& controller, Journal& journal) : m_controller(controller) {
  if (!m_controller.does_nothing()) {
    // The start command as a digest: the repair compares it with the configuration's, and the
    // journal never holds a token of SERVICE_START_CMD.
    m_entry = journal.add("services", {{"describe", m_controller.describe_stop()},
                                       {"start_digest", command_digest(m_controller.start_argv())},
                                       {"start_shown", m_controller.describe_start()}});
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
