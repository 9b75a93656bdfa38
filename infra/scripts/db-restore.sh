#!/usr/bin/env bash
# The plan's DB restore script: the same as `make restore-db`.
#   infra/scripts/db-restore.sh FILE        prints the plan, changes nothing
#   CONFIRM=YES infra/scripts/db-restore.sh FILE
# It stops api/worker/beat (SERVICE_CONTROL), restores into a side database, swaps it in, starts
# the services again; `backupctl restore undo` goes back. See README.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
file=${1:-${BACKUP_FILE:-}}
[[ -n "$file" ]] && file=$(realpath -m "$file")  # make -C changes the directory
exec make --no-print-directory -C "$root" restore-db BACKUP_FILE="$file" CONFIRM="${CONFIRM:-}"
