#!/usr/bin/env bash
# Benchmark for issue 2: `backupctl backup db` against the plan's procedure
# (`pg_dump -Fc -f F && sha256sum F`) and bare `pg_dump -Fc -Z1 -f F`, alternating in one run on a
# generated archive-like database of >= 1 GB. Prints times, sizes, ratios and backupctl's peak RSS.
#   bench/db_backup.sh [ROUNDS] [DOCS]      (defaults: 3 rounds, 600000 documents ~ 1.1 GB)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rounds=${1:-3}
docs=${2:-600000}
pgdump=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_dump

trap bench_pg_stop EXIT
bench_pg_start "$docs"
out=$bench_work/out
rm -rf "$out"; mkdir -p "$out"

declare -A total size rss
run() {  # name command...
  local name=$1; shift
  sync; local t0; t0=$(now)
  "$@" >"$out/$name.stdout"
  local t; t=$(elapsed "$t0")
  total[$name]=$(echo "${total[$name]:-0} + $t" | bc -l)
  printf '  %-18s %8ss\n' "$name" "$(fmt_s "$t")" >&2
}

plan() { "$pgdump" -Fc -f "$out/plan.dump" archive && sha256sum "$out/plan.dump"; }
bare_z1() { "$pgdump" -Fc -Z1 -f "$out/bare.dump" archive; }
ours() { BACKUP_DIR=$out/ours BACKUP_DB_COMPRESSION=$1 "$backupctl" -q --json backup db; }

for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds" >&2
  rm -rf "$out"/ours* "$out"/*.dump
  # Alternate the order so no command always runs on a warmer cache.
  if (( r % 2 )); then
    run plan plan; run bare_z1 bare_z1; run ours_default ours gzip:1; run ours_zstd ours zstd
  else
    run ours_zstd ours zstd; run ours_default ours gzip:1; run bare_z1 bare_z1; run plan plan
  fi
  size[plan]=$(file_size "$out/plan.dump")
  size[bare_z1]=$(file_size "$out/bare.dump")
  size[ours_default]=$(file_size "$(ls "$out"/ours/db/*.dump)")
  size[ours_zstd]=$(file_size "$(ls "$out"/ours/db/*.dump.zst)")
  for k in ours_default ours_zstd; do
    r_kib=$(sed -n 's/.*"peak_rss_kib": \([0-9]*\).*/\1/p' "$out/$k.stdout")
    (( ${rss[$k]:-0} > r_kib )) || rss[$k]=$r_kib
  done
done

echo
echo "database: $(psql -X -A -t -c "SELECT pg_size_pretty(pg_database_size('archive'))" archive), rounds: $rounds, machine: $(nproc) cores, $(uname -r)"
printf '%-34s %9s %12s\n' "command" "wall (s)" "size (MB)"
printf '%-34s %9s %12s\n' "plan: pg_dump -Fc + sha256sum" "$(fmt_s "$(avg plan)")" "$(( size[plan] / 1000000 ))"
printf '%-34s %9s %12s\n' "bare: pg_dump -Fc -Z1 -f" "$(fmt_s "$(avg bare_z1)")" "$(( size[bare_z1] / 1000000 ))"
printf '%-34s %9s %12s\n' "backupctl (default gzip:1)" "$(fmt_s "$(avg ours_default)")" "$(( size[ours_default] / 1000000 ))"
printf '%-34s %9s %12s\n' "backupctl (zstd)" "$(fmt_s "$(avg ours_zstd)")" "$(( size[ours_zstd] / 1000000 ))"
echo
echo "default: $(ratio "$(avg plan)" "$(avg ours_default)")x faster than the plan (target >= 2.5), size $(ratio "${size[ours_default]}*100" "${size[plan]}")% of the plan's (target <= 105)"
echo "default: $(ratio "$(avg ours_default)*100" "$(avg bare_z1)")% of bare pg_dump -Z1 time (target <= 105)"
echo "zstd:    $(ratio "$(avg plan)" "$(avg ours_zstd)")x faster than the plan (target >= 3), size $(ratio "${size[ours_zstd]}*100" "${size[plan]}")% of the plan's (target < 100)"
echo "peak RSS of backupctl: default $(( rss[ours_default] / 1024 )) MiB, zstd $(( rss[ours_zstd] / 1024 )) MiB (target <= 64)"
