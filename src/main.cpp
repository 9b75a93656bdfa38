#include <cstdio>
#include <exception>

#include "cli/app.hpp"

int main(int argc, char** argv) {
  try {
    return backupctl::run_cli(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "backupctl: internal error: %s\nhint: this is a bug; please report it\n",
                 e.what());
    return 1;
  }
}
