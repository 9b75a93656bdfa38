#include "cli/command.hpp"

#include <iostream>

#include "util/error.hpp"

namespace backupctl {

void require_confirmation(const Invocation& in, bool confirm_flag, const std::string& plan,
                          const nlohmann::json& plan_json, const std::string& how) {
  if (in.config.confirmed || confirm_flag) return;
  if (in.out.json) {
    print_json({{"ok", false}, {"plan", plan_json}, {"confirmed", false}});
  } else {
    std::cout << plan;
  }
  throw Error(ErrorCode::confirmation_required, "not confirmed: nothing was changed",
              "to go ahead: " + how);
}

}  // namespace backupctl
