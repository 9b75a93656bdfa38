#!/usr/bin/env bash
# Benchmark for issue 3: `backupctl restore db` (checksum check, side database, pg_restore -j,
# analyze, row counts, swap) against the plan's procedure (`dropdb; createdb; pg_restore -d`), on
# the database of bench/db_backup.sh, alternating in one run. Also the services-down time of
# `--online` (services stand-in: `true`).
#   bench/db_restore.sh [ROUNDS] [DOCS]
# BACKUPCTL_B=path/to/other/backupctl also restores the default .dump with that build in every
# round, alternating with this one, and prints the two builds' ratio: a before/after comparison
# in one run (separate runs drift: the first after generating the database is the slowest).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rounds=${1:-3}
docs=${2:-600000}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

trap bench_pg_stop EXIT
bench_pg_start "$docs"
out=$bench_work/restore
rm -rf "$out"; mkdir -p "$out"

echo "preparing the dumps..." >&2
"$bindir/pg_dump" -Fc -f "$out/plan.dump" archive
BACKUP_DIR=$out/ours "$backupctl" -q backup db
BACKUP_DIR=$out/ours BACKUP_DB_COMPRESSION=zstd "$backupctl" -q backup db
ours_file=$(ls "$out"/ours/db/*.dump)
zstd_file=$(ls "$out"/ours/db/*.dump.zst)
# The target the restores replace: a copy of the database.
psql -X -q -c "DROP DATABASE IF EXISTS target" -c "CREATE DATABASE target TEMPLATE archive" postgres

# Each command starts from a settled server. A restore leaves its new tables to autovacuum (a
# VACUUM ANALYZE of 1.4 GB that starts seconds later and runs for 10+ s); left alone it runs
# during the next command, and since the plan's first step (dropdb) ends the autovacuum of the
# database it drops while backupctl's side restore does not touch it, it slowed only whatever ran
# next (backupctl after the plan: 8.6 s and 8.1 s, against 7.2 s and 7.3 s after itself). So
# before each command, untimed: vacuum and analyze the target, checkpoint, write dirty pages out.
settle() {
  psql -X -q -c "VACUUM (ANALYZE)" target
  psql -X -q -c "CHECKPOINT" postgres
  sync
}

declare -A total last
run() {
  local name=$1; shift
  settle; local t0; t0=$(now)
  "$@" >"$out/$name.stdout"
  local t; t=$(elapsed "$t0")
  total[$name]=$(echo "${total[$name]:-0} + $t" | bc -l)
  last[$name]=$t
  printf '  %-16s %8ss\n' "$name" "$(fmt_s "$t")" >&2
}
plan() {
  "$bindir/dropdb" target && "$bindir/createdb" target && "$bindir/pg_restore" -d target "$out/plan.dump"
}
ours() {
  CONFIRM=YES BACKUP_DIR=$out/ours SERVICE_CONTROL=none "${2:-$backupctl}" -q --json restore db \
    --target-db target --file "$1"
}
online() {
  CONFIRM=YES BACKUP_DIR=$out/ours SERVICE_CONTROL=command SERVICE_STOP_CMD=true SERVICE_START_CMD=true \
    "$backupctl" -q --json restore db --online --target-db target --file "$ours_file"
}
drop_previous() {
  for db in $(psql -X -A -t -c "SELECT datname FROM pg_database WHERE datname LIKE 'target\_\_%'" postgres); do
    psql -X -q -c "DROP DATABASE \"$db\"" postgres
  done
}

# Each command once, untimed, first: with only the plan warmed up, the first round's backupctl
# restores were still the slowest of every run (10.4, 8.8, 9.0, 12.4 s against 7.0-8.2 s later).
echo "warm-up (untimed)..." >&2
settle; plan >/dev/null
for f in "$ours_file" "$zstd_file"; do settle; ours "$f" >/dev/null; drop_previous; done
[[ -n "${BACKUPCTL_B:-}" ]] && { settle; ours "$ours_file" "$BACKUPCTL_B" >/dev/null; drop_previous; }
settle; online >/dev/null; drop_previous
down_max=0
per_round=""
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds" >&2
  if (( r % 2 )); then
    run plan plan; run ours ours "$ours_file"; drop_previous
    [[ -n "${BACKUPCTL_B:-}" ]] && { run ours_b ours "$ours_file" "$BACKUPCTL_B"; drop_previous; }
    run ours_zstd ours "$zstd_file"; drop_previous
  else
    run ours_zstd ours "$zstd_file"; drop_previous
    [[ -n "${BACKUPCTL_B:-}" ]] && { run ours_b ours "$ours_file" "$BACKUPCTL_B"; drop_previous; }
    run ours ours "$ours_file"; drop_previous; run plan plan
  fi
  run online online; drop_previous
  per_round+="  round $r: .dump $(ratio "${last[ours]}" "${last[plan]}")x, .dump.zst $(ratio "${last[ours_zstd]}" "${last[plan]}")x"$'\n'
  down=$(sed -n 's/.*"services_down_seconds": \([0-9.e-]*\).*/\1/p' "$out/online.stdout")
  (( $(echo "$down > $down_max" | bc -l) )) && down_max=$down
done

echo
echo "database: $(psql -X -A -t -c "SELECT pg_size_pretty(pg_database_size('archive'))" archive), rounds: $rounds, machine: $(nproc) cores, $(uname -r)"
printf '%-50s %9s\n' "command" "wall (s)"
printf '%-50s %9s\n' "plan: dropdb; createdb; pg_restore -d" "$(fmt_s "$(avg plan)")"
printf '%-50s %9s\n' "backupctl restore db, .dump (default backup)" "$(fmt_s "$(avg ours)")"
printf '%-50s %9s\n' "backupctl restore db, .dump.zst (zstd backup)" "$(fmt_s "$(avg ours_zstd)")"
printf '%-50s %9s\n' "backupctl restore db --online" "$(fmt_s "$(avg online)")"
if [[ -n "${BACKUPCTL_B:-}" ]]; then
  printf '%-50s %9s\n' "BACKUPCTL_B restore db, .dump" "$(fmt_s "$(avg ours_b)")"
fi
echo
echo "each round's time against that round's plan:"
printf '%s' "$per_round"
echo "restore of the default .dump: $(ratio "$(avg ours)" "$(avg plan)")x the plan's time (target <= 0.9)"
[[ -n "${BACKUPCTL_B:-}" ]] && echo "this build's .dump restore against BACKUPCTL_B's: $(ratio "$(avg ours)" "$(avg ours_b)")x ($BACKUPCTL_B: $(ratio "$(avg ours_b)" "$(avg plan)")x the plan's)"
echo "restore of the zstd .dump.zst: $(ratio "$(avg ours_zstd)" "$(avg plan)")x the plan's time (target <= 0.9)"
echo "--online: services down at most $(fmt_s "$down_max") s (target <= 5)"
echo "phases of the last .dump restore: $(sed -n '/"phases"/,/}/p' "$out/ours.stdout" | tr -d '\n ' )"
echo "phases of the last .dump.zst restore: $(sed -n '/"phases"/,/}/p' "$out/ours_zstd.stdout" | tr -d '\n ' )"
