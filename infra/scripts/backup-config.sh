#!/usr/bin/env bash
# The plan's config backup script: the same as `make backup-config`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec make --no-print-directory -C "$root" backup-config
