// Stopping and starting the app's services (api, worker, beat) around a restore, so nothing
// writes to the database while it is replaced.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "catalog/journal.hpp"
#include "config/config.hpp"

namespace backupctl {

class ServiceController {
 public:
  virtual ~ServiceController() = default;
  // Throw Error(tool_failed) with the command's own message when it fails.
  virtual void stop() = 0;
  virtual void start() = 0;
  // "`docker compose -f infra/docker-compose.yml stop api worker beat`", for plans and logs; a
  // command from SERVICE_STOP_CMD shows only its program (util/words: describe_command).
  virtual std::string describe_stop() const = 0;
  virtual std::string describe_start() const { return "nothing"; }
  virtual bool does_nothing() const { return false; }
  // The command start() runs (empty when it does nothing): the journal records its digest, and the
  // repair of an interrupted run starts the services with it only when this configuration's is
  // the same.
  virtual std::vector<std::string> start_argv() const { return {}; }
};

// The controller SERVICE_CONTROL selects. Throws Error(usage) when it cannot work (compose
// without a compose file).
std::unique_ptr<ServiceController> make_service_controller(const Config& config);

// Stops the services on construction and starts them again on destruction, whatever unwinds the
// stack (an error, a signal, a crashing pg_restore): the journal entry "services" is written
// before the stop, and its undo (command/repair.cpp) is the start, also after a crash. start_now()
// starts them at the moment the caller chooses and reports a failure as an exception.
class ServicesStopped {
 public:
  ServicesStopped(ServiceController& controller, Journal& journal);
  ~ServicesStopped() = default;  // m_entry's undo starts them
  ServicesStopped(const ServicesStopped&) = delete;
  ServicesStopped& operator=(const ServicesStopped&) = delete;

  void start_now();
  double seconds_down() const;

 private:
  ServiceController& m_controller;
  Journal::Entry m_entry;
  double m_stopped_at = 0;
  double m_down = -1;
};

}  // namespace backupctl
