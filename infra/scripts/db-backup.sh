#!/usr/bin/env bash
# The plan's DB backup script: the same as `make backup-db`. Settings come from the environment
# (and infra/env when present); see README.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec make --no-print-directory -C "$root" backup-db
