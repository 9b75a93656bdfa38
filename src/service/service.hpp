// Stopping and starting the app's services (api, worker, beat) around a restore, so nothing
// writes to the database while it is replaced.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace backupctl {

class ServiceController {
 public:
  virtual ~ServiceController() = default;
  // Throw Error(tool_failed) with the command's own message when it fails.
  virtual void stop() = 0;
  virtual void start() = 0;
  // "docker compose -f infra/docker-compose.yml stop api worker beat", for plans and logs.
  virtual std::string describe_stop() const = 0;
  virtual bool does_nothing() const { return false; }
};

// The controller SERVICE_CONTROL selects. Throws Error(usage) when it cannot work (compose
// without a compose file).
std::unique_ptr<ServiceController> make_service_controller(const Config& config);

// Stops the services on construction and starts them again on destruction, whatever unwinds the
// stack (an error, SIGINT/SIGTERM, a crashing pg_restore). start_now() starts them early (the
// --online swap) and reports a failure as an exception instead of a log line.
class ServicesStopped {
 public:
  explicit ServicesStopped(ServiceController& controller);
  ~ServicesStopped();
  ServicesStopped(const ServicesStopped&) = delete;
  ServicesStopped& operator=(const ServicesStopped&) = delete;

  void start_now();
  double seconds_down() const;

 private:
  ServiceController& m_controller;
  bool m_running = false;
  double m_stopped_at = 0;
  double m_down = -1;
};

}  // namespace backupctl
