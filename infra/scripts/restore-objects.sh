#!/usr/bin/env bash
# The plan's attachment restore script: the same as `make restore-objects`.
#   infra/scripts/restore-objects.sh FILE              prints the plan, changes nothing
#   CONFIRM=YES infra/scripts/restore-objects.sh FILE
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
file=${1:-${BACKUP_FILE:-}}
[[ -n "$file" ]] && file=$(realpath -m "$file")  # make -C changes the directory
exec make --no-print-directory -C "$root" restore-objects BACKUP_FILE="$file" CONFIRM="${CONFIRM:-}"
