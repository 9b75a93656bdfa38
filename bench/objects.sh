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
# A fresh server each run: s3rver keeps three files per object, and each run starts from the
# same empty data directory.
rm -rf "$work/s3"; mkdir -p "$work/s3"
port=$(( 20000 + RANDOM % 20000 ))
node --openssl-legacy-provider "$bench_root/node_modules/s3rver/bin/s3rver.js" -d "$work/s3" \
  -a 127.0.0.1 -p "$port" --no-vhost-buckets --silent >"$work/s3rver.log" 2>&1 &
s3pid=$!
trap 'kill $s3pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q listening "$work/s3rver.log" && break; sleep 0.1; done
endpoint=http://127.0.0.1:$port
s3() { "$aws" --endpoint-url "$endpoint" "$@"; }

if [[ $(find "$work/src/small" -type f 2>/dev/null | wc -l) != "$small" ||
      $(find "$work/src/large" -type f 2>/dev/null | wc -l) != "$large" ]]; then
  echo "generating $small x 10 KB + $large x 20 MB..." >&2
  rm -rf "$work/src"; mkdir -p "$work/src/small" "$work/src/large"
  for i in $(seq 1 "$small"); do head -c 10240 /dev/urandom > "$work/src/small/doc_$i.pdf"; done
  for i in $(seq 1 "$large"); do head -c 20971520 /dev/urandom > "$work/src/large/scan_$i.bin"; done
fi
echo "uploading them to a fresh s3rver..." >&2
s3 s3 mb s3://bench >/dev/null
s3 s3 sync --only-show-errors "$work/src" s3://bench

export OBJECT_STORAGE=minio MINIO_ENDPOINT=$endpoint MINIO_ACCESS_KEY=S3RVER MINIO_SECRET_KEY=S3RVER MINIO_BUCKETS=bench
declare -A total maxrss cpu server_cpu
# CPU seconds s3rver has used so far (all its threads: JavaScript, libuv's file-system pool, V8's).
s3rver_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$s3pid/stat"; }
# What every timed command starts from. The wipe between restores deletes 15,000 of s3rver's
# files (and the plan's steps delete their folders of 5,000). On ext4 without a journal (this
# machine's root file system) the kernel then avoids reusing freed inodes whose inode-table block
# is still cached and was freed in the last 60 s, or 360 s once the block is written to again
# (fs/ext4/ialloc.c, recently_deleted()): every file created meanwhile first steps over them.
# `perf` put a quarter of s3rver's time in a restore right after a wipe there, and its CPU per
# restore doubled; that is the wipe's cost, not the restoring client's. So: write everything out,
# drop the page cache (which holds those blocks), and read back what the commands read (the
# archives, s3rver's files, awscli's and backupctl's code), so that no command starts cold.
settle() {
  sync
  if echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
    find "$work/s3" "$work/plan.tar.gz" "$work/ours" /usr/lib/python3* -type f -print0 2>/dev/null |
      xargs -0 cat >/dev/null || true
    "$aws" --version >/dev/null; "$backupctl" --version >/dev/null
  elif [[ -z ${warned_settle:-} ]]; then
    warned_settle=1
    echo "note: cannot drop the page cache (not root): restores right after a wipe may pay the kernel's scan" \
      "over recently deleted inodes" >&2
  fi
}
timed() {  # name command...  (wall time into total[name]; max RSS of the command into $rss)
  local name=$1; shift
  clear_for "$name"; settle; local t0 c0; t0=$(now); c0=$(s3rver_cpu)
  /usr/bin/time -f '%M %U %S' -o "$work/rss" bash -c "$*" >"$work/$name.out" 2>"$work/$name.err"
  local t; t=$(elapsed "$t0")
  local rss user sys; read -r rss user sys < <(tail -n 1 "$work/rss")
  local sc; sc=$(echo "$(s3rver_cpu) - $c0" | bc -l)
  (( rss > ${maxrss[$name]:-0} )) && maxrss[$name]=$rss
  total[$name]=$(echo "${total[$name]:-0} + $t" | bc -l)
  cpu[$name]=$(echo "${cpu[$name]:-0} + $user + $sys" | bc -l)
  server_cpu[$name]=$(echo "${server_cpu[$name]:-0} + $sc" | bc -l)
  printf '  %-16s %8ss  (max RSS %s MiB; CPU: client %ss, s3rver %ss)\n' "$name" "$(fmt_s "$t")" \
    "$(( rss / 1024 ))" "$(fmt_s "$(echo "$user + $sys" | bc -l)")" "$(fmt_s "$sc")" >&2
}
plan_backup() { mkdir "$work/dl" && s3 s3 sync --only-show-errors s3://bench "$work/dl" && tar czf "$work/plan.tar.gz" -C "$work/dl" .; }
plan_restore() { mkdir "$work/ex" && tar xzf "$work/plan.tar.gz" -C "$work/ex" && s3 s3 sync --only-show-errors "$work/ex" s3://bench; }
ours_backup() { BACKUP_DIR=$work/ours "$backupctl" -q backup objects; }
ours_restore() { CONFIRM=YES BACKUP_DIR=$work/ours "$backupctl" -q restore objects --file "$(ls "$work"/ours/objects/*.tar.gz)"; }
wipe() { s3 s3 rm --only-show-errors --recursive s3://bench; }
# The folders each command writes are removed before it, untimed (and before settle()).
clear_for() {
  case $1 in
    plan_backup) rm -rf "$work/dl" ;;
    plan_restore) rm -rf "$work/ex" ;;
    ours_backup) rm -rf "$work/ours" ;;
  esac
}
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
# CPU columns: the command's own (user + system, all its processes) and s3rver's during it.
row() { printf '%-46s %9s %12s %12s\n' "$1" "$(fmt_s "$(avg "$2")")" \
  "$(fmt_s "$(echo "${cpu[$2]} / $rounds" | bc -l)")" "$(fmt_s "$(echo "${server_cpu[$2]} / $rounds" | bc -l)")"; }
printf '%-46s %9s %12s %12s\n' "command" "wall (s)" "CPU (s)" "s3rver (s)"
row "plan backup: aws s3 sync + tar czf" plan_backup
row "backupctl backup objects" ours_backup
row "plan restore: tar xzf + aws s3 sync" plan_restore
row "backupctl restore objects (incl. checks)" ours_restore
echo
echo "backup:  $(ratio "$(avg plan_backup)" "$(avg ours_backup)")x faster (target >= 3)"
echo "restore: $(ratio "$(avg plan_restore)" "$(avg ours_restore)")x faster (target >= 3)"
# The CPU backupctl and s3rver need between them, spread perfectly over the cores, is the least
# wall time any schedule could reach; 3x needs the plan's time / 3.
echo "restore floor on $(nproc) cores: (backupctl + s3rver CPU) / $(nproc) =" \
  "$(fmt_s "$(echo "(${cpu[ours_restore]} + ${server_cpu[ours_restore]}) / $rounds / $(nproc)" | bc -l)") s;" \
  "3x needs <= $(fmt_s "$(echo "$(avg plan_restore) / 3" | bc -l)") s"
echo "peak RSS of backupctl: backup $(( maxrss[ours_backup] / 1024 )) MiB, restore $(( maxrss[ours_restore] / 1024 )) MiB (target <= 128)"
