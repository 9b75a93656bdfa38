#!/usr/bin/env bash
# Benchmark for issue 26 (point-in-time recovery), side by side in one run:
#   - the primary's TPS under pgbench without and with the receiver (`wal stream`), alternating, and
#     one round with WAL_SYNCHRONOUS=yes (every commit waits for the receiver's fsync);
#   - the RPO here: commit -> its WAL flushed in BACKUP_DIR (the flush the receiver reports after each
#     group fsync), over
#     COMMITS single-row commits, p50/p99/max;
#   - the RPO off-site: commit -> the receiver's record that the remote (a folder) has it, with
#     WAL_PUSH_INTERVAL=5, ten samples;
#   - the receiver's peak RSS;
#   - `backup base` against `pgbackrest backup --type=full` (Debian's 2.45, zstd, as postgres) of
#     the same cluster: MB/s of the data directory;
#   - `restore db --to-time T` of the archive database (bench/db_backup.sh's, ~1.4 GB), T the end of
#     PGBENCH_SECONDS of pgbench WAL after the base backup, against the plan's dump restore (dropdb;
#     createdb; pg_restore) of the same database. T is before that dump restore: `latest` would
#     also replay the dump restore's own WAL (another 1.4 GB), which is not the issue's measure.
#   bench/pitr.sh [PGBENCH_SECONDS] [COMMITS] [TPS_SECONDS]
# The benchmark cluster is restarted durable for this (fsync, synchronous_commit and full page
# writes on; the other benchmarks run it with them off) and stopped at the end.
set -euo pipefail
command -v pgbackrest >/dev/null || { echo "bench/pitr.sh: pgbackrest is not installed (apt-get install pgbackrest)" >&2; exit 2; }
source "$(dirname "$0")/lib.sh"
pgbench_secs=${1:-300}
commits=${2:-1000}
tps_secs=${3:-30}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
out=$bench_work/pitr
receiver=""

cleanup() {
  [[ -n "$receiver" ]] && kill -TERM "$receiver" 2>/dev/null && wait "$receiver" 2>/dev/null || true
  psql -X -q -c "SELECT pg_drop_replication_slot('backupctl') FROM pg_replication_slots WHERE slot_name = 'backupctl'" postgres \
    >/dev/null 2>&1 || true
  bench_pg_stop
}
trap cleanup EXIT

bench_pg_stop  # restarted with the durable settings below
export PG_EXTRA_OPTS="-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_slot_wal_keep_size=20GB -c max_wal_size=4GB"
bench_pg_start 600000
rm -rf "$out"; mkdir -p "$out/work" "$out/remote"
chmod 755 "$out" "$out/work"
export BACKUP_DIR=$out/backup BACKUP_WAL=stream PITR_WORK_DIR=$out/work SERVICE_CONTROL=none \
  BACKUP_REMOTE_URL=file://$out/remote BACKUP_REMOTE_ALLOW_PLAINTEXT=yes WAL_PUSH_INTERVAL=5

if ! psql -X -A -t -c "SELECT 1" bench >/dev/null 2>&1; then
  psql -X -q -c "CREATE DATABASE bench" postgres
  "$bindir/pgbench" -q -i -s 20 bench >/dev/null 2>&1
fi
psql -X -A -t -c "SELECT 'cluster: ' || pg_size_pretty(sum(pg_database_size(datname))) FROM pg_database" postgres >&2

start_receiver() {
  "$backupctl" -q wal stream 2>>"$out/receiver.log" &
  receiver=$!
  for _ in $(seq 100); do
    [[ $(psql -X -A -t -c "SELECT count(*) FROM pg_stat_replication" postgres) == 1 ]] && return
    sleep 0.1
  done
  echo "pitr.sh: the receiver did not connect (see $out/receiver.log)" >&2; exit 1
}
stop_receiver() { kill -TERM "$receiver"; wait "$receiver" || true; receiver=""; }
# Until the receiver has flushed everything the server wrote and archived it: the "with" rounds
# time the receiver keeping up, not its catching up with the WAL of the round before.
caught_up() {
  local lsn; lsn=$(psql -X -A -t -c "SELECT pg_current_wal_lsn()" postgres)
  for _ in $(seq 600); do
    [[ $(psql -X -A -t -c "SELECT coalesce(bool_and(flush_lsn >= '$lsn'), false) FROM pg_stat_replication" postgres) == t ]] && break
    sleep 0.1
  done
  sleep 2
}
tps() { "$bindir/pgbench" -c 4 -j 2 -T "$tps_secs" bench 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }

echo "TPS, ${tps_secs} s each, without and with the receiver, alternating..." >&2
start_receiver; stop_receiver  # the slot exists from here on in both
declare -a off on
# The order alternates (without, with; then with, without): the cluster warms up over the rounds,
# and a fixed order would hand that to one side.
round_off() { sleep 2; off+=("$(tps)"); echo "  without: ${off[-1]}" >&2; }
round_on() { start_receiver; caught_up; on+=("$(tps)"); stop_receiver; echo "  with:    ${on[-1]}" >&2; }
round_off; round_on
round_on; round_off
tps_off=$(echo "(${off[0]} + ${off[1]}) / 2" | bc -l)
tps_on=$(echo "(${on[0]} + ${on[1]}) / 2" | bc -l)
# WAL_SYNCHRONOUS=yes (RPO 0): every commit waits for the receiver's fsync. One round, after the
# alternating ones, against their "without" mean: what RPO 0 costs, no target.
WAL_SYNCHRONOUS=yes start_receiver; caught_up
for _ in $(seq 100); do
  [[ -n $(psql -X -A -t -c "SHOW synchronous_standby_names" postgres) ]] && break
  sleep 0.1
done
[[ -n $(psql -X -A -t -c "SHOW synchronous_standby_names" postgres) ]] || { echo "pitr.sh: WAL_SYNCHRONOUS did not take" >&2; exit 1; }
tps_sync=$(tps); stop_receiver
echo "  with WAL_SYNCHRONOUS=yes: $tps_sync" >&2

start_receiver; caught_up
echo "base backup: backupctl, then pgbackrest..." >&2
data_bytes=$(psql -X -A -t -c "SELECT sum(pg_database_size(datname)) FROM pg_database" postgres)
t0=$(now); "$backupctl" -q backup base --no-remote >/dev/null; t_base=$(elapsed "$t0")
base_file=$(ls "$BACKUP_DIR"/base/*.tar.zst)
mkdir -p "$out/pgbackrest"; chown postgres:postgres "$out/pgbackrest"
cat >"$out/pgbackrest.conf" <<EOF
[global]
repo1-path=$out/pgbackrest
compress-type=zst
start-fast=y
archive-check=n
log-level-console=warn
[bench]
pg1-path=$bench_work/pg/data
pg1-socket-path=$bench_work/pg
pg1-port=5432
EOF
chmod 644 "$out/pgbackrest.conf"
pgbr() { runuser -u postgres -- pgbackrest --config="$out/pgbackrest.conf" --stanza=bench "$@"; }
pgbr stanza-create >/dev/null
t0=$(now); pgbr backup --type=full >/dev/null; t_pgbr=$(elapsed "$t0")
pgbr_bytes=$(du -sb "$out/pgbackrest/backup" | cut -f1)
t0=$(now); pgbr backup --type=full --process-max=2 >/dev/null; t_pgbr2=$(elapsed "$t0")

echo "RPO here: $commits commits, each timed until the receiver reported it flushed..." >&2
psql -X -q postgres <<EOF
DROP TABLE IF EXISTS rpo;
CREATE TABLE rpo (n int, seconds double precision);
DO \$\$
DECLARE lsn pg_lsn; t0 timestamptz;
BEGIN
  FOR i IN 1..$commits LOOP
    INSERT INTO rpo VALUES (-i, 0);
    COMMIT;
    lsn := pg_current_wal_lsn(); t0 := clock_timestamp();
    WHILE coalesce((SELECT flush_lsn FROM pg_stat_replication LIMIT 1), '0/0') < lsn LOOP
      PERFORM pg_sleep(0.0005);
    END LOOP;
    INSERT INTO rpo VALUES (i, extract(epoch FROM clock_timestamp() - t0));
    COMMIT;
  END LOOP;
END \$\$;
EOF
read -r rpo_p50 rpo_p99 rpo_max < <(psql -X -A -t -F ' ' -c "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds), percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds), max(seconds) FROM rpo WHERE n > 0" postgres)

echo "RPO off-site (WAL_PUSH_INTERVAL=5): 10 commits, each timed until the remote has it..." >&2
sysid=$(psql -X -A -t -c "SELECT system_identifier FROM pg_control_system()" postgres)
record=$BACKUP_DIR/wal/$sysid/.remote.json
offsite=()
for i in $(seq 10); do
  psql -X -q -c "INSERT INTO rpo VALUES (0, $i)" postgres
  t0=$(now)
  until [[ -f "$record" ]] && (( $(echo "$(sed -n 's/.*"received_by_unix": \([0-9.e+]*\).*/\1/p' "$record") > $t0" | bc -l) )); do
    sleep 0.05
  done
  offsite+=("$(elapsed "$t0")")
  sleep "0.$((RANDOM % 10))"
done
offsite_max=$(printf '%s\n' "${offsite[@]}" | sort -g | tail -n 1)
offsite_avg=$(printf '%s\n' "${offsite[@]}" | awk '{s+=$1} END {print s/NR}')

echo "pgbench for ${pgbench_secs} s (the WAL a restore replays)..." >&2
"$bindir/pgbench" -c 4 -j 2 -T "$pgbench_secs" bench >/dev/null 2>&1
psql -X -q -c "CHECKPOINT" postgres
sleep 2
target_time=$(psql -X -A -t -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')" postgres)
sleep 1
rss_ours=$(awk '/VmHWM/ {print $2}' "/proc/$receiver/status")
wal_bytes=$(du -sb "$BACKUP_DIR/wal" | cut -f1)
segments=$(ls "$BACKUP_DIR/wal/$sysid" | grep -c '\.zst$' || true)

echo "restore: the plan's dump restore, then restore db --to-time $target_time..." >&2
"$bindir/pg_dump" -Fc -f "$out/plan.dump" archive
settle() { psql -X -q -c "CHECKPOINT" postgres; sync; }
psql -X -q -c "DROP DATABASE IF EXISTS target" -c "CREATE DATABASE target" postgres
settle; t0=$(now)
"$bindir/dropdb" target && "$bindir/createdb" target && "$bindir/pg_restore" -d target "$out/plan.dump"
t_plan=$(elapsed "$t0")
settle; t0=$(now)
CONFIRM=YES "$backupctl" -q --json restore db --to-time "$target_time" --target-db target >"$out/restore.json"
t_pitr=$(elapsed "$t0")
for db in $(psql -X -A -t -c "SELECT datname FROM pg_database WHERE datname LIKE 'target\_\_%'" postgres); do
  psql -X -q -c "DROP DATABASE \"$db\"" postgres
done
stop_receiver

mb() { echo "scale=1; $1 / 1048576" | bc -l; }
cat <<EOF

## pitr.sh ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; pgbench ${pgbench_secs} s, $commits commits)
| measure | backupctl | baseline | ratio | target |
|---|---|---|---|---|
| TPS under pgbench -c 4, ${tps_secs} s x2 | $(fmt_s "$tps_on") with the receiver | $(fmt_s "$tps_off") without | $(ratio "$tps_on" "$tps_off") | >= 0.95 |
| TPS with WAL_SYNCHRONOUS=yes (commits wait for the receiver's fsync), ${tps_secs} s x1 | $(fmt_s "$tps_sync") | $(fmt_s "$tps_off") without | $(ratio "$tps_sync" "$tps_off") | (RPO 0's cost; no target) |
| RPO here: commit -> flushed in BACKUP_DIR | p50 $(fmt_s "$rpo_p50") s, p99 $(fmt_s "$rpo_p99") s, max $(fmt_s "$rpo_max") s | | | p99 <= 1 s |
| RPO off-site (folder, WAL_PUSH_INTERVAL=5) | mean $(fmt_s "$offsite_avg") s, max $(fmt_s "$offsite_max") s | | | <= 10 s |
| base backup of $(mb "$data_bytes") MiB | $(fmt_s "$t_base") s, $(mb "$(file_size "$base_file")") MiB | pgbackrest $(fmt_s "$t_pgbr") s ($(fmt_s "$t_pgbr2") s with process-max=2), $(mb "$pgbr_bytes") MiB | $(ratio "$t_pgbr" "$t_base") x pgbackrest's throughput ($(ratio "$t_pgbr2" "$t_base") x with 2 processes) | >= 1 |
| restore db --to-time (the end of pgbench; $segments segments, $(mb "$wal_bytes") MiB of WAL kept) | $(fmt_s "$t_pitr") s | dump restore $(fmt_s "$t_plan") s | $(ratio "$t_pitr" "$t_plan") | <= 1.5 |
| peak RSS of wal stream | $((rss_ours / 1024)) MiB | | | <= 64 MiB |
EOF
