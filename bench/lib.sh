# Shared helpers for the benchmark scripts (sourced).
bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_work=${BENCH_WORK:-$bench_root/bench/work}
backupctl=${BACKUPCTL:-$bench_root/build/backupctl}
# Restores run the post-restore checklist of APP_ROOT (the source tree here), whose http checks
# need the app; the benchmarks time the restore alone.
export CHECKS_FILE=${CHECKS_FILE:-$bench_work/no-checklist.toml}

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
fmt_s() { printf '%.2f' "$1"; }
file_size() { stat -c %s "$1"; }
# The mean of a command's times: the script's total[NAME] over its $rounds.
avg() { echo "${total[$1]} / $rounds" | bc -l; }

# Starts the benchmark cluster (kept in $bench_work/pg between runs) and creates the archive
# database of $1 documents unless it exists.
bench_pg_start() {
  local docs=$1
  mkdir -p "$bench_work"
  eval "$("$bench_root/tools/pg-throwaway.sh" start "$bench_work/pg" 5432)"
  export PGDATABASE=archive
  if ! psql -X -A -t -c "SELECT 1" archive >/dev/null 2>&1; then
    echo "generating the archive database ($docs documents)..." >&2
    psql -X -q -c "CREATE DATABASE archive" postgres
    psql -X -q -v docs="$docs" -f "$bench_root/bench/gen_archive.sql" archive
  fi
  psql -X -A -t -c "SELECT 'database: ' || pg_size_pretty(pg_database_size('archive'))" archive >&2
}

bench_pg_stop() { "$bench_root/tools/pg-throwaway.sh" stop "$bench_work/pg" || true; }
