#!/usr/bin/env bash
# `make demo`: the operations plan end to end on an embedded default. It starts a throwaway
# PostgreSQL, an object store (a folder; Ceph RGW with DEMO_S3=1) and the sample archive app (api +
# worker) with generated data; runs a backup set; stages an incident (a dropped table, deleted
# attachments, an edited config file); restores the database and attachments, previews and applies
# the config; runs the checklist; rehearses; prints a summary with timings; and stops everything it
# started. The files stay in ./demo for you to look at.
#   DEMO_DOCUMENTS=300 DEMO_S3=0 examples/demo/demo.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BACKUPCTL:-$root/build/backupctl}
app_bin=${ARCHIVE_APP:-$root/build/examples/archive-app/archive-app}
demo=${DEMO_DIR:-$root/demo}
docs=${DEMO_DOCUMENTS:-300}
work=$(mktemp -d /tmp/backupctl-demo.XXXXXX)
chmod 755 "$work"
rgw_dir=""
export ARCHIVE_APP=$app_bin
export API_PORT=${DEMO_API_PORT:-$(( 20000 + RANDOM % 20000 ))}
export API_URL=http://127.0.0.1:$API_PORT

cleanup() {
  "$root/examples/archive-app/appctl.sh" stop "$work/run" >/dev/null 2>&1 || true
  "$root/examples/archive-app/appctl.sh" stop "$work/staging-run" >/dev/null 2>&1 || true
  [[ -n "$rgw_dir" ]] && "$root/tools/rgw-throwaway.sh" discard "$rgw_dir" >/dev/null 2>&1
  "$root/tools/pg-throwaway.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

declare -a timings
t_start=$(date +%s.%N)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; step_name=$*; step_t0=$(date +%s.%N); }
# The summary names a step by its title up to the first run of three spaces.
done_step() { timings+=("$(printf '%-46s %6.1f s' "${step_name%%   *}" "$(echo "$(date +%s.%N) - $step_t0" | bc -l)")"); }

step "starting a throwaway PostgreSQL"
eval "$("$root/tools/pg-throwaway.sh" start "$work/pg")"
psql -X -q -c "CREATE DATABASE archive" postgres
export PGDATABASE=archive
done_step

rm -rf "$demo"
mkdir -p "$demo/app/infra/monitoring"
if [[ "${DEMO_S3:-0}" == 1 ]]; then
  step "starting Ceph RGW   (the object store over the S3 API; it checks signatures)"
  eval "$("$root/tools/rgw-throwaway.sh" start "$work/rgw")"
  rgw_dir=$work/rgw
  export OBJECT_STORAGE=minio MINIO_ENDPOINT=$RGW_ENDPOINT MINIO_ACCESS_KEY=$RGW_ACCESS_KEY MINIO_SECRET_KEY=$RGW_SECRET_KEY
  done_step
else
  export OBJECT_STORAGE=disk OBJECT_STORAGE_DIR=$demo/objects
  mkdir -p "$OBJECT_STORAGE_DIR"
fi

step "the sample app   ($docs documents with attachments, api on port $API_PORT, worker)"
cat > "$demo/app/infra/env" <<ENV
# settings of the sample stack (secrets are masked in config previews)
POSTGRES_PASSWORD=demo-secret-password
LOG_LEVEL=info
API_PORT=$API_PORT
ENV
chmod 600 "$demo/app/infra/env"
printf 'services:\n  api: {}\n  worker: {}\n  beat: {}\n' > "$demo/app/infra/docker-compose.yml"
printf 'scrape_configs:\n  - job_name: archive\n' > "$demo/app/infra/monitoring/prometheus.yml"
cp "$root/infra/backup-checks.toml" "$demo/app/infra/backup-checks.toml"
"$app_bin" generate --documents "$docs" --schema "$root/examples/archive-app/schema.sql"
export APP_ROOT=$demo/app BACKUP_DIR=$demo/backup BACKUP_PROFILE=demo
# The off-site copy: a second folder stands in for a mount from another machine (or an S3
# bucket). The demo's backups are not encrypted (no age key to keep apart), so it says so.
mkdir -p "$demo/offsite"
export BACKUP_REMOTE_URL=file://$demo/offsite BACKUP_REMOTE_ALLOW_PLAINTEXT=yes
export SERVICE_CONTROL=command
export SERVICE_STOP_CMD="$root/examples/archive-app/appctl.sh stop $work/run"
export SERVICE_START_CMD="$root/examples/archive-app/appctl.sh start $work/run"
# The rehearsal's staging app: the same app on the staging database and objects (backupctl
# passes them in PG* and OBJECT_STORAGE_DIR / OBJECT_TARGET), on a port of its own.
staging_port=$(( API_PORT + 1 ))
export STAGING_API_URL=http://127.0.0.1:$staging_port
export STAGING_APP_START_CMD="env API_PORT=$staging_port $root/examples/archive-app/appctl.sh start $work/staging-run"
export STAGING_APP_STOP_CMD="$root/examples/archive-app/appctl.sh stop $work/staging-run"
$SERVICE_START_CMD
echo "api: $(curl -s "$API_URL/api/health")"
done_step

step "backupctl check   (the plan's checklist on the healthy system)"
"$bin" check
done_step

step "backupctl backup all   (make backup-all: db, attachments, config as one set)"
"$bin" backup all
done_step

step "off-site copy   (BACKUP_REMOTE_URL: the set went to a second folder; listed and read back from there)"
"$bin" list --remote
"$bin" verify --remote --read-data
done_step

step "restore from the off-site copy   (as a new host would: an empty BACKUP_DIR, the dump read as it downloads, into a scratch database)"
offsite_dump=$(basename "$(ls "$demo"/offsite/db/*.dump | head -n 1)")
BACKUP_DIR=$demo/new-host CONFIRM=YES "$bin" restore db --remote --file "$offsite_dump" --target-db archive_offsite
echo "documents in archive_offsite: $(psql -X -A -t -c 'SELECT count(*) FROM documents' archive_offsite); files stored in the new host's BACKUP_DIR/db: $(ls -A "$demo/new-host/db" | wc -l)"
psql -X -q -c "DROP DATABASE archive_offsite" postgres
done_step

step "an incident   (ingest_jobs dropped, 5 attachment files deleted, infra/env edited)"
psql -X -q -c "DROP TABLE ingest_jobs" archive
"$app_bin" delete-attachments --count 5
sed -i 's/LOG_LEVEL=info/LOG_LEVEL=debug/; s/demo-secret-password/leaked-and-rotated/' "$demo/app/infra/env"
"$bin" check || echo "(the checklist sees the damage, as it should)"
done_step

step "backupctl restore all --set latest   (restore db + attachments, then the checklist)"
"$bin" restore all --set latest || true  # without CONFIRM=YES: the plan only
CONFIRM=YES "$bin" restore all --set latest
done_step

step "make restore-config   (MODE=preview, then MODE=apply CONFIRM=YES)"
config_file=$(ls "$BACKUP_DIR"/config/config_*.tar.gz | head -n 1)
"$bin" restore config --file "$config_file" --mode preview
CONFIRM=YES "$bin" restore config --file "$config_file" --mode apply
done_step

step "backupctl check (after the restore)"
"$bin" check
done_step

step "backupctl rehearse   (make rehearse: the set into staging, a staging app on it, every check, removed)"
"$bin" rehearse
done_step

step "backupctl list and status"
"$bin" list
"$bin" status || true
done_step

printf '\n\033[1m== summary\033[0m\n'
printf '%s\n' "${timings[@]}"
printf '%-46s %6.1f s\n' "total" "$(echo "$(date +%s.%N) - $t_start" | bc -l)"
echo
echo "backups:      $BACKUP_DIR  (db/, objects/, config/, sets/, rehearsals/)"
echo "app checkout: $APP_ROOT"
echo "recover with stock tools: see README.md, 'Restoring with stock tools only'"
