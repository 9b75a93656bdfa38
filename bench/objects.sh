#!/usr/bin/env bash
# Benchmark for issues 4 and 14: `backupctl backup objects` / `restore objects` against the
# plain-tools procedures, side by side in one run against one Ceph RGW (tools/rgw-throwaway.sh,
# memstore, stock settings: beast's tcp_nodelay is off, as in every RGW deployment by default):
#   awscli: backup = `aws s3 sync` to a folder + `tar czf`; restore = `tar xzf` + `aws s3 sync` up
#   rclone: backup = `rclone copy --transfers 64` to a folder + `tar czf` + `sha256sum`;
#           restore = `tar xzf` + `rclone copy --transfers 64` up
# Data: SMALL objects of 10 KB plus LARGE of 20 MB (random bytes, as attachments are mostly
# already compressed), plus HUGE of 100 MB (default none: multipart uploads, whose parts go up
# side by side). backupctl runs with its defaults. Reports wall time, the client's CPU and
# the server's (radosgw + OSD + monitor), peak RSS by /usr/bin/time, and the restore's CPU floor.
#   bench/objects.sh [ROUNDS] [SMALL] [LARGE] [HUGE]        (needs root for drop_caches; rclone, awscli)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rounds=${1:-3}
small=${2:-5000}
large=${3:-20}
huge=${4:-0}
aws=/usr/bin/aws
command -v rclone >/dev/null || { echo "bench/objects.sh: rclone is missing: apt-get install rclone" >&2; exit 1; }

work=$bench_work/objects
# A fresh server each run, every object in memory (memstore).
eval "$("$bench_root/tools/rgw-throwaway.sh" start "$work/rgw")"
trap '"$bench_root/tools/rgw-throwaway.sh" stop "$work/rgw" || true' EXIT
endpoint=$RGW_ENDPOINT
export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
# Empty config files of our own, not /dev/null: in some sandboxes /dev/null is a regular file that
# holds whatever was written to it, and awscli then fails to parse it.
: > "$work/empty.conf"
export AWS_CONFIG_FILE=$work/empty.conf AWS_SHARED_CREDENTIALS_FILE=$work/empty.conf
export RCLONE_CONFIG_RGW_TYPE=s3 RCLONE_CONFIG_RGW_PROVIDER=Ceph RCLONE_CONFIG_RGW_ENDPOINT=$endpoint
export RCLONE_CONFIG_RGW_ACCESS_KEY_ID=$RGW_ACCESS_KEY RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
export RCLONE_CONFIG=$work/empty.conf
# The machine's AWS_CA_BUNDLE (if any) is for other endpoints; rclone's SDK refuses it on plain http.
unset AWS_CA_BUNDLE
s3() { "$aws" --endpoint-url "$endpoint" "$@"; }

if [[ $(find "$work/src/small" -type f 2>/dev/null | wc -l) != "$small" ||
      $(find "$work/src/large" -type f 2>/dev/null | wc -l) != "$large" ||
      $(find "$work/src/huge" -type f 2>/dev/null | wc -l) != "$huge" ]]; then
  echo "generating $small x 10 KB + $large x 20 MB + $huge x 100 MB..." >&2
  rm -rf "$work/src"; mkdir -p "$work/src/small" "$work/src/large" "$work/src/huge"
  for i in $(seq 1 "$huge"); do head -c 104857600 /dev/urandom > "$work/src/huge/video_$i.bin"; done
  for i in $(seq 1 "$small"); do head -c 10240 /dev/urandom > "$work/src/small/doc_$i.pdf"; done
  for i in $(seq 1 "$large"); do head -c 20971520 /dev/urandom > "$work/src/large/scan_$i.bin"; done
fi
echo "uploading them to a fresh RGW..." >&2
s3 s3 mb s3://bench >/dev/null
rclone copy --transfers 32 "$work/src" rgw:bench

export OBJECT_STORAGE=minio MINIO_ENDPOINT=$endpoint MINIO_ACCESS_KEY=$RGW_ACCESS_KEY MINIO_SECRET_KEY=$RGW_SECRET_KEY MINIO_BUCKETS=bench
declare -A total maxrss cpu server_cpu
# CPU seconds the server's daemons have used so far.
server_cpu_now() {
  local hz; hz=$(getconf CLK_TCK)
  local s=0
  for f in "$work"/rgw/run/{rgw,osd,mon}.pid; do
    s=$(awk -v hz="$hz" -v s="$s" '{print s + ($14 + $15) / hz}' "/proc/$(cat "$f")/stat")
  done
  echo "$s"
}
# What every timed command starts from: written out, the page cache dropped, and what the
# commands read read back (the archives, the tools' code), so that no command starts cold.
settle() {
  sync
  if echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
    find "$work/plan.tar.gz" "$work/ours" /usr/lib/python3* -type f -print0 2>/dev/null |
      xargs -0 cat >/dev/null || true
    "$aws" --version >/dev/null; "$backupctl" --version >/dev/null; rclone version >/dev/null
  elif [[ -z ${warned_settle:-} ]]; then
    warned_settle=1
    echo "note: cannot drop the page cache (not root)" >&2
  fi
}
timed() {  # name command...  (wall time into total[name]; max RSS of the command into $rss)
  local name=$1; shift
  clear_for "$name"; settle; local t0 c0; t0=$(now); c0=$(server_cpu_now)
  /usr/bin/time -f '%M %U %S' -o "$work/rss" bash -c "$*" >"$work/$name.out" 2>"$work/$name.err"
  local t; t=$(elapsed "$t0")
  local rss user sys; read -r rss user sys < <(tail -n 1 "$work/rss")
  local sc; sc=$(echo "$(server_cpu_now) - $c0" | bc -l)
  (( rss > ${maxrss[$name]:-0} )) && maxrss[$name]=$rss
  total[$name]=$(echo "${total[$name]:-0} + $t" | bc -l)
  cpu[$name]=$(echo "${cpu[$name]:-0} + $user + $sys" | bc -l)
  server_cpu[$name]=$(echo "${server_cpu[$name]:-0} + $sc" | bc -l)
  printf '  %-16s %8ss  (max RSS %s MiB; CPU: client %ss, server %ss)\n' "$name" "$(fmt_s "$t")" \
    "$(( rss / 1024 ))" "$(fmt_s "$(echo "$user + $sys" | bc -l)")" "$(fmt_s "$sc")" >&2
}
aws_backup() { mkdir "$work/dl" && s3 s3 sync --only-show-errors s3://bench "$work/dl" && tar czf "$work/plan.tar.gz" -C "$work/dl" .; }
aws_restore() { mkdir "$work/ex" && tar xzf "$work/plan.tar.gz" -C "$work/ex" && s3 s3 sync --only-show-errors "$work/ex" s3://bench; }
rclone_backup() {
  mkdir "$work/dl" && rclone copy --transfers 64 rgw:bench "$work/dl" && tar czf "$work/plan.tar.gz" -C "$work/dl" . &&
    sha256sum "$work/plan.tar.gz" >/dev/null
}
rclone_restore() { mkdir "$work/ex" && tar xzf "$work/plan.tar.gz" -C "$work/ex" && rclone copy --transfers 64 "$work/ex" rgw:bench; }
ours_backup() { BACKUP_DIR=$work/ours "$backupctl" -q backup objects; }
ours_restore() { CONFIRM=YES BACKUP_DIR=$work/ours "$backupctl" -q restore objects --file "$(ls "$work"/ours/objects/*.tar.gz)"; }
wipe() { rclone purge rgw:bench 2>/dev/null; s3 s3 mb s3://bench >/dev/null; }
# The folders each command writes are removed before it, untimed (and before settle()).
clear_for() {
  case $1 in
    *_backup) rm -rf "$work/dl" ;;&
    ours_backup) rm -rf "$work/ours" ;;
    *_restore) rm -rf "$work/ex" ;;
  esac
}
export -f s3 aws_backup aws_restore rclone_backup rclone_restore ours_backup ours_restore
export aws endpoint work backupctl

# The plan's archive for the restores: made once by the awscli backup of the first round.
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds" >&2
  if (( r % 2 )); then
    timed aws_backup aws_backup; timed rclone_backup rclone_backup; timed ours_backup ours_backup
  else
    timed ours_backup ours_backup; timed rclone_backup rclone_backup; timed aws_backup aws_backup
  fi
  for cmd in $( (( r % 2 )) && echo aws_restore rclone_restore ours_restore || echo ours_restore rclone_restore aws_restore); do
    wipe; timed "$cmd" "$cmd"
  done
done

echo
echo "objects: $small x 10 KB + $large x 20 MB + $huge x 100 MB in Ceph RGW (memstore), rounds: $rounds, machine: $(nproc) cores"
# CPU columns: the command's own (user + system, all its processes) and the server's during it.
row() { printf '%-52s %9s %12s %12s\n' "$1" "$(fmt_s "$(avg "$2")")" \
  "$(fmt_s "$(echo "${cpu[$2]} / $rounds" | bc -l)")" "$(fmt_s "$(echo "${server_cpu[$2]} / $rounds" | bc -l)")"; }
printf '%-52s %9s %12s %12s\n' "command" "wall (s)" "CPU (s)" "server (s)"
row "awscli backup: aws s3 sync + tar czf" aws_backup
row "rclone backup: rclone copy --transfers 64 + tar + sha256" rclone_backup
row "backupctl backup objects (defaults)" ours_backup
row "awscli restore: tar xzf + aws s3 sync" aws_restore
row "rclone restore: tar xzf + rclone copy --transfers 64" rclone_restore
row "backupctl restore objects (incl. checks)" ours_restore
echo
echo "backup:  $(ratio "$(avg rclone_backup)" "$(avg ours_backup)")x rclone (target >= 3), $(ratio "$(avg aws_backup)" "$(avg ours_backup)")x awscli (target >= 5)"
echo "restore: $(ratio "$(avg rclone_restore)" "$(avg ours_restore)")x rclone (target >= 1.7), $(ratio "$(avg aws_restore)" "$(avg ours_restore)")x awscli (target >= 2.5)"
# The CPU backupctl and the server need between them, spread perfectly over the cores, is the
# least wall time any schedule could reach.
floor=$(echo "(${cpu[ours_restore]} + ${server_cpu[ours_restore]}) / $rounds / $(nproc)" | bc -l)
echo "restore floor on $(nproc) cores: (backupctl + server CPU) / $(nproc) = $(fmt_s "$floor") s;" \
  "backupctl restore $(ratio "$(avg ours_restore)" "$floor")x of it (target <= 1.2)"
echo "peak RSS of backupctl: backup $(( maxrss[ours_backup] / 1024 )) MiB, restore $(( maxrss[ours_restore] / 1024 )) MiB (target <= 128)"
