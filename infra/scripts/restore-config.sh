#!/usr/bin/env bash
# The plan's config restore script: the same as `make restore-config`.
#   infra/scripts/restore-config.sh FILE [preview|apply]     (apply needs CONFIRM=YES)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
file=${1:-${BACKUP_FILE:-}}
[[ -n "$file" ]] && file=$(realpath -m "$file")  # make -C changes the directory
exec make --no-print-directory -C "$root" restore-config BACKUP_FILE="$file" MODE="${2:-${MODE:-preview}}" CONFIRM="${CONFIRM:-}"
