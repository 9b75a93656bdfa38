#!/usr/bin/env bash
# Benchmark for issue 4: `backupctl backup objects` / `restore objects` against the awscli
# procedure, in one run against one s3rver: backup = `aws s3 sync` to a folder + `tar czf`;
# restore = `tar xzf` + `aws s3 sync` up. Data: 5000 objects of 10 KB plus 20 of 20 MB (random
# bytes, as attachments are mostly already compressed). Peak RSS by /usr/bin/time.
#   bench/objects.sh [ROUNDS] [SMALL] [LARGE]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rounds=${1:-3}
small=${2:-5000}
large=${3:-20}
aws=/usr/bin/aws
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

[[ -d "$bench_root/node_modules/s3rver" ]] || (cd "$bench_root" && npm ci --no-audit --no-fund --loglevel=error)
work=$bench_work/objects
mkdir -p "$work/s3"
port=$(( 20000 + RANDOM % 20000 ))
node --openssl-legacy-provider "$bench_root/node_modules/s3rver/bin/s3rver.js" -d "$work/s3" \
  -a 127.0.0.1 -p "$port" --no-vhost-buckets --silent >"$work/s3rver.log" 2>&1 &
s3pid=$!
trap 'kill $s3pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q listening "$work/s3rver.log" && break; sleep 0.1; done
endpoint=http://127.0.0.1:$port
s3() { "$aws" --endpoint-url "$endpoint" "$@"; }

if ! s3 s3api head-bucket --bucket bench >/dev/null 2>&1; then
  echo "generating and uploading $small x 10 KB + $large x 20 MB..." >&2
  rm -rf "$work/src"; mkdir -p "$work/src/small" "$work/src/large"
  for i in $(seq 1 "$small"); do head -c 10240 /dev/urandom > "$work/src/small/doc_$i.pdf"; done
  for i in $(seq 1 "$large"); do head -c 20971520 /dev/urandom > "$work/src/large/scan_$i.bin"; done
  s3 s3 mb s3://bench >/dev/null
  s3 s3 sync --only-show-errors "$work/src" s3://bench
fi

export OBJECT_STORAGE=minio MINIO_ENDPOINT=$endpoint MINIO_ACCESS_KEY=S3RVER MINIO_SECRET_KEY=S3RVER MINIO_BUCKETS=bench
declare -A total maxrss
timed() {  # name command...  (wall time into total[name]; max RSS of the command into $rss)
  local name=$1; shift
  sync; local t0; t0=$(now)
  /usr/bin/time -f %M -o "$work/rss" bash -c "$*" >"$work/$name.out" 2>"$work/$name.err"
  local t; t=$(elapsed "$t0")
  local rss; rss=$(tail -n 1 "$work/rss")
  (( rss > ${maxrss[$name]:-0} )) && maxrss[$name]=$rss
  total[$name]=$(echo "${total[$name]:-0} + $t" | bc -l)
  printf '  %-16s %8ss  (max RSS %s MiB)\n' "$name" "$(fmt_s "$t")" "$(( rss / 1024 ))" >&2
}
plan_backup() { rm -rf "$work/dl" && mkdir -p "$work/dl" && s3 s3 sync --only-show-errors s3://bench "$work/dl" && tar czf "$work/plan.tar.gz" -C "$work/dl" .; }
plan_restore() { rm -rf "$work/ex" && mkdir -p "$work/ex" && tar xzf "$work/plan.tar.gz" -C "$work/ex" && s3 s3 sync --only-show-errors "$work/ex" s3://bench; }
ours_backup() { rm -rf "$work/ours"; BACKUP_DIR=$work/ours "$backupctl" -q backup objects; }
ours_restore() { CONFIRM=YES BACKUP_DIR=$work/ours "$backupctl" -q restore objects --file "$(ls "$work"/ours/objects/*.tar.gz)"; }
wipe() { s3 s3 rm --only-show-errors --recursive s3://bench; }
export -f s3 plan_backup plan_restore ours_backup ours_restore
export aws endpoint work backupctl

for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds" >&2
  if (( r % 2 )); then
    timed plan_backup plan_backup; timed ours_backup ours_backup
  else
    timed ours_backup ours_backup; timed plan_backup plan_backup
  fi
  wipe
  if (( r % 2 )); then
    timed plan_restore plan_restore; wipe; timed ours_restore ours_restore
  else
    timed ours_restore ours_restore; wipe; timed plan_restore plan_restore
  fi
done

echo
echo "objects: $small x 10 KB + $large x 20 MB in s3rver, rounds: $rounds, machine: $(nproc) cores"
printf '%-46s %9s\n' "command" "wall (s)"
printf '%-46s %9s\n' "plan backup: aws s3 sync + tar czf" "$(fmt_s "$(avg plan_backup)")"
printf '%-46s %9s\n' "backupctl backup objects" "$(fmt_s "$(avg ours_backup)")"
printf '%-46s %9s\n' "plan restore: tar xzf + aws s3 sync" "$(fmt_s "$(avg plan_restore)")"
printf '%-46s %9s\n' "backupctl restore objects (incl. checks)" "$(fmt_s "$(avg ours_restore)")"
echo
echo "backup:  $(ratio "$(avg plan_backup)" "$(avg ours_backup)")x faster (target >= 3)"
echo "restore: $(ratio "$(avg plan_restore)" "$(avg ours_restore)")x faster (target >= 3)"
echo "peak RSS of backupctl: backup $(( maxrss[ours_backup] / 1024 )) MiB, restore $(( maxrss[ours_restore] / 1024 )) MiB (target <= 128)"
