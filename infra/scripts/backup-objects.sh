#!/usr/bin/env bash
# The plan's attachment backup script: the same as `make backup-objects`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec make --no-print-directory -C "$root" backup-objects
