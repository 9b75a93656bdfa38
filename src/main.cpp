#include <clocale>
#include <cstdio>
#include <exception>

#include "cli/app.hpp"

int main(int argc, char** argv) {
  // Object keys and file names are UTF-8; libarchive converts names through the locale's charset.
  if (!std::setlocale(LC_CTYPE, "C.UTF-8")) std::setlocale(LC_CTYPE, "");
  try {
    return backupctl::run_cli(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "backupctl: internal error: %s\nhint: this is a bug; please report it\n",
                 e.what());
    return 1;
  }
}
