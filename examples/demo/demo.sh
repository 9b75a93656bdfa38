#!/usr/bin/env bash
# `make demo`: the main job end to end on an embedded default. Starts a throwaway PostgreSQL with a
# small sample archive database, runs backup, verify and list, shows where the files are, and stops
# what it started. The backups stay in ./demo/backup for you to look at.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BACKUPCTL:-$root/build/backupctl}
demo=$root/demo
pgdir=$(mktemp -d /tmp/backupctl-demo-pg.XXXXXX)

cleanup() {
  "$root/tools/pg-throwaway.sh" stop "$pgdir" || true
  rm -rf "$pgdir"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting a throwaway PostgreSQL"
eval "$("$root/tools/pg-throwaway.sh" start "$pgdir")"
psql -X -q -c "CREATE DATABASE archive" postgres
psql -X -q -f "$root/examples/demo/sample.sql" archive
psql -X -A -t -c "SELECT 'sample data: ' || (SELECT count(*) FROM documents) || ' documents, ' ||
  (SELECT count(*) FROM attachments) || ' attachments, ' || (SELECT count(*) FROM ingest_jobs) ||
  ' ingest_jobs'" archive

export PGDATABASE=archive APP_ROOT=$demo BACKUP_DIR=$demo/backup BACKUP_PROFILE=demo
mkdir -p "$demo"

step "backupctl backup db   (what \`make backup-db\` runs)"
"$bin" backup db

step "backupctl verify --latest"
"$bin" verify --latest

step "backupctl list"
"$bin" list

step "the files"
ls -l "$BACKUP_DIR/db" | tail -n +2
latest=$("$bin" list --json --kind db | sed -n 's/.*"path": "\(.*\)",/\1/p' | head -n 1)
echo
echo "newest dump:  $latest"
echo "its meta:     $latest.meta"
echo "check it with stock tools:  sha256sum $latest && pg_restore --list $latest | head"
