#!/usr/bin/env bash
# Where the receiver's TPS cost comes from (issue 26's "TPS with the receiver >= 0.95x"): pgbench
# (-c 4 -j 2, ROUND_SECONDS each) on a throwaway cluster of its own (scale 50, durable settings),
# alone, beside `pg_receivewal --synchronous` (an fsync per message: what `wal stream` runs), and
# beside `pg_receivewal` unsynced (fsync only at the end of a segment), alternating, two rounds.
# No backupctl involved: this isolates the fsyncs.
#   bench/receivewal_fsync.sh [ROUND_SECONDS]
# Run as root (the cluster runs as postgres).
set -euo pipefail
secs=${1:-20}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=$(mktemp -d /var/tmp/receivewal-fsync.XXXXXX)
chmod 755 "$work"
data=$work/data wal=$work/wal port=55432
mkdir -p "$wal"
chown -R postgres "$work"
cleanup() {
  su postgres -c "$bindir/pg_ctl -D $data -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
su postgres -c "$bindir/initdb -D $data -A trust" >/dev/null
su postgres -c "$bindir/pg_ctl -D $data -o '-p $port -k $work -c max_wal_size=4GB -c max_slot_wal_keep_size=4GB' -l $work/log -w start" >/dev/null
conn=(-h "$work" -p "$port" -U postgres)
"$bindir/pgbench" "${conn[@]}" -i -s 50 postgres >/dev/null 2>&1
"$bindir/pg_receivewal" "${conn[@]}" --create-slot --slot=fsync_bench
tps() { "$bindir/pgbench" "${conn[@]}" -c 4 -j 2 -T "$secs" postgres 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
with_receiver() {  # $1: extra pg_receivewal option (or empty)
  "$bindir/pg_receivewal" "${conn[@]}" -D "$wal" --slot=fsync_bench --no-password $1 2>/dev/null & local r=$!
  sleep 2
  tps
  kill -INT "$r"; wait "$r" || true
  rm -f "$wal"/*
}
for round in 1 2; do
  echo "round $round: alone $(tps) | --synchronous $(with_receiver --synchronous) | unsynced $(with_receiver '')"
done
