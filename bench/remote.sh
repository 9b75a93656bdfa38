#!/usr/bin/env bash
# Benchmark for issue 15: off-site copies to Ceph RGW (tools/rgw-throwaway.sh, bluestore on a
# sparse file, a fresh server for every copy), side by side in one run:
#   push:    `backupctl push --all` of the benchmark set (the dump of the ≥ 1 GB archive database
#            of bench/db_backup.sh and the attachment archive of bench/objects.sh's objects)
#            against `rclone copy` of the same two files, with rclone's defaults and with the
#            settings that were fastest here (--transfers 2 --s3-upload-concurrency 8
#            --s3-chunk-size 16M); the bucket is emptied between commands (untimed).
#   resume:  a push killed (SIGKILL) when half the dump's parts have arrived, then the rerun:
#            the bytes it sends against the bytes that were missing.
#   restore: `restore db --remote` into an empty BACKUP_DIR (the dump read as it downloads: the
#            load runs while the rest arrives) against `restore db` of the same file from local
#            disk.
# Reports wall times, the ratios, and backupctl's peak RSS (/usr/bin/time).
#   bench/remote.sh [ROUNDS] [DOCS]          (needs rclone; root to drop the page cache)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rounds=${1:-3}
docs=${2:-600000}
command -v rclone >/dev/null || { echo "bench/remote.sh: rclone is missing: apt-get install rclone" >&2; exit 1; }

work=$bench_work/remote
mkdir -p "$work"
# GB-sized copies: the OSD keeps them in a sparse file (bluestore), not in memory (memstore's
# 8 GiB fill up; a full OSD makes every write wait).
export RGW_OBJECTSTORE=bluestore
trap '"$bench_root/tools/rgw-throwaway.sh" stop "$work/rgw" || true; bench_pg_stop' EXIT
bench_pg_start "$docs"
# A fresh server for every copy: RGW frees deleted objects only after its garbage collection
# (hours), and its memstore OSD (8 GiB) is full after a few 900 MiB copies (writes then hang).
rgw_fresh() {
  "$bench_root/tools/rgw-throwaway.sh" discard "$work/rgw" >/dev/null 2>&1 || true
  rm -rf "$work/rgw"
  eval "$("$bench_root/tools/rgw-throwaway.sh" start "$work/rgw")"
  endpoint=$RGW_ENDPOINT
  # Each server has keys of its own.
  export RCLONE_CONFIG_RGW_ENDPOINT=$endpoint BACKUP_REMOTE_ENDPOINT=$endpoint
  export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
  export RCLONE_CONFIG_RGW_ACCESS_KEY_ID=$RGW_ACCESS_KEY RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
  export BACKUP_REMOTE_ACCESS_KEY=$RGW_ACCESS_KEY BACKUP_REMOTE_SECRET_KEY=$RGW_SECRET_KEY
  # A just-started gateway may refuse the first requests for a moment.
  local i
  for i in $(seq 1 40); do s3 s3 mb s3://offsite >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "bench/remote.sh: cannot create the bucket on the fresh RGW" >&2; return 1
}
eval "$("$bench_root/tools/rgw-throwaway.sh" start "$work/rgw")"
endpoint=$RGW_ENDPOINT
export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
# Empty config files of our own, not /dev/null: in some sandboxes /dev/null is a regular file that
# holds whatever was written to it, and awscli then fails to parse it.
: > "$work/empty.conf"
export AWS_CONFIG_FILE=$work/empty.conf AWS_SHARED_CREDENTIALS_FILE=$work/empty.conf
export RCLONE_CONFIG_RGW_TYPE=s3 RCLONE_CONFIG_RGW_PROVIDER=Ceph RCLONE_CONFIG_RGW_ENDPOINT=$endpoint
export RCLONE_CONFIG_RGW_ACCESS_KEY_ID=$RGW_ACCESS_KEY RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
export RCLONE_CONFIG=$work/empty.conf
unset AWS_CA_BUNDLE
s3() { /usr/bin/aws --endpoint-url "$endpoint" "$@"; }
s3 s3 mb s3://offsite >/dev/null

# The benchmark set: one dump and one attachment archive in $work/local (made once per run).
objects_src=$bench_work/objects/src
if [[ ! -d $objects_src ]]; then
  echo "generating 2000 x 10 KB + 10 x 20 MB attachments..." >&2
  mkdir -p "$objects_src/small" "$objects_src/large"
  for i in $(seq 1 2000); do head -c 10240 /dev/urandom > "$objects_src/small/doc_$i.pdf"; done
  for i in $(seq 1 10); do head -c 20971520 /dev/urandom > "$objects_src/large/scan_$i.bin"; done
fi
export BACKUP_REMOTE_URL=s3://offsite/bench BACKUP_REMOTE_ENDPOINT=$endpoint
export BACKUP_REMOTE_ACCESS_KEY=$RGW_ACCESS_KEY BACKUP_REMOTE_SECRET_KEY=$RGW_SECRET_KEY
# Encryption is the backup's cost, not the copy's: plaintext here, so the two files are the same
# bytes for rclone and for backupctl.
export BACKUP_REMOTE_ALLOW_PLAINTEXT=yes SERVICE_CONTROL=none OBJECT_STORAGE=disk OBJECT_STORAGE_DIR=$objects_src
rm -rf "$work/local"
echo "making the benchmark set..." >&2
BACKUP_DIR=$work/local "$backupctl" -q backup db --no-remote
BACKUP_DIR=$work/local "$backupctl" -q backup objects --no-remote
dump=$(ls "$work"/local/db/*.dump)
archive=$(ls "$work"/local/objects/*.tar.gz)
set_bytes=$(( $(file_size "$dump") + $(file_size "$archive") ))
echo "set: $(basename "$dump") $(( $(file_size "$dump") >> 20 )) MiB, $(basename "$archive") $(( $(file_size "$archive") >> 20 )) MiB" >&2
mkdir -p "$work/files"; ln -f "$dump" "$archive" "$work/files/"

declare -A total maxrss
settle() {
  # What the last restore left the server to do is done before the next timed command: the
  # autovacuum of the restored tables (PostgreSQL vacuums freshly loaded tables: seconds of CPU
  # that landed in whichever command came next) and a checkpoint.
  psql -X -q -c "VACUUM" target 2>/dev/null || true
  psql -X -q -c "CHECKPOINT" postgres
  sync
  if echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
    cat "$dump" "$archive" >/dev/null; "$backupctl" --version >/dev/null; rclone version >/dev/null
  fi
}
timed() {  # name command...
  local name=$1; shift
  settle; local t0; t0=$(now)
  /usr/bin/time -f '%M' -o "$work/rss" bash -c "$*" >"$work/$name.out" 2>"$work/$name.err" ||
    { echo "$name failed:" >&2; tail -n 5 "$work/$name.err" >&2; exit 1; }
  local t; t=$(elapsed "$t0")
  local rss; rss=$(tail -n 1 "$work/rss")
  (( rss > ${maxrss[$name]:-0} )) && maxrss[$name]=$rss
  total[$name]=$(echo "${total[$name]:-0} + $t" | bc -l)
  printf '  %-16s %8ss  (max RSS %s MiB)\n' "$name" "$(fmt_s "$t")" "$(( rss / 1024 ))" >&2
}
open_uploads() {  # "key id" lines of the bucket's open multipart uploads
  s3 s3api list-multipart-uploads --bucket offsite --output text --query 'Uploads[].[Key,UploadId]' 2>/dev/null |
    grep -v '^None$' || true
}
# Each copy starts from an empty server (untimed).
wipe() { rgw_fresh; }
rclone_default() { timeout 600 rclone copy "$work/files" rgw:offsite/rclone; }
rclone_tuned() { timeout 600 rclone copy --transfers 2 --s3-upload-concurrency 8 --s3-chunk-size 16M "$work/files" rgw:offsite/rclone; }
ours_push() { BACKUP_DIR=$work/local "$backupctl" -q push --all; }
# Both restores replace the database `target` (the previous one it keeps is dropped after, untimed).
ours_restore_local() { CONFIRM=YES BACKUP_DIR=$work/local "$backupctl" -q restore db --target-db target --file "$dump"; }
ours_restore_remote() {
  rm -rf "$work/fresh"
  CONFIRM=YES BACKUP_DIR=$work/fresh "$backupctl" -q restore db --target-db target --remote --file "$(basename "$dump")"
}
drop_previous() {
  for db in $(psql -X -A -t -c "SELECT datname FROM pg_database WHERE datname LIKE 'target\_\_%'" postgres); do
    psql -X -q -c "DROP DATABASE \"$db\"" postgres
  done
}
export -f rclone_default rclone_tuned ours_push ours_restore_local ours_restore_remote
export work dump backupctl

resume_sent=0 resume_missing=0
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds" >&2
  for cmd in $( (( r % 2 )) && echo rclone_default rclone_tuned ours_push || echo ours_push rclone_tuned rclone_default); do
    wipe; timed "$cmd" "$cmd"
    [[ $cmd == ours_push ]] || continue
    # The restores read the copy the push just made (before the next wipe).
    for restore in $( (( r % 2 )) && echo ours_restore_local ours_restore_remote || echo ours_restore_remote ours_restore_local); do
      timed "$restore" "$restore"; drop_previous
    done
  done
  # Killed when half the set's parts (8 MiB each) have arrived, then resumed.
  wipe
  parts=$(( ($(file_size "$dump") + 8388607) / 8388608 + ($(file_size "$archive") + 8388607) / 8388608 ))
  BACKUP_DIR=$work/local BACKUPCTL_FAULT="remote.part-sent#$(( parts / 2 ))" "$backupctl" -q push --all 2>/dev/null || true
  # What had arrived: the files completed (not their metas) and the parts of the open upload.
  done_bytes=$(s3 s3api list-objects-v2 --bucket offsite --prefix bench/ --output text \
    --query "sum(Contents[?!ends_with(Key, '.meta')].Size)" 2>/dev/null || echo 0)
  [[ $done_bytes =~ ^[0-9]+$ ]] || done_bytes=0
  there=$done_bytes
  while read -r key id; do
    [[ -z $key || $key == None ]] && continue
    p=$(s3 s3api list-parts --bucket offsite --key "$key" --upload-id "$id" --output text --query 'sum(Parts[].Size)')
    [[ $p =~ ^[0-9]+$ ]] && there=$(( there + p ))
  done < <(open_uploads)
  missing=$(( set_bytes - there ))
  sent=$(BACKUP_DIR=$work/local "$backupctl" push --all --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
  # The metas are not in set_bytes: a few KiB.
  echo "  resume: $(( there >> 20 )) MiB had arrived; the rerun sent $(( sent >> 20 )) MiB of the $(( missing >> 20 )) MiB missing" >&2
  resume_sent=$(( resume_sent + sent )); resume_missing=$(( resume_missing + missing ))
done

echo
echo "remote: Ceph RGW (${RGW_OBJECTSTORE:-memstore}), set $(( set_bytes >> 20 )) MiB (dump + attachment archive), rounds: $rounds, machine: $(nproc) cores"
printf '%-62s %9s\n' "command" "wall (s)"
printf '%-62s %9s\n' "rclone copy (defaults: --transfers 4, 4 x 5 MiB chunks)" "$(fmt_s "$(avg rclone_default)")"
printf '%-62s %9s\n' "rclone copy --transfers 2 --s3-upload-concurrency 8 --s3-chunk-size 16M" "$(fmt_s "$(avg rclone_tuned)")"
printf '%-62s %9s\n' "backupctl push --all" "$(fmt_s "$(avg ours_push)")"
printf '%-62s %9s\n' "backupctl restore db (local file)" "$(fmt_s "$(avg ours_restore_local)")"
printf '%-62s %9s\n' "backupctl restore db --remote (streamed)" "$(fmt_s "$(avg ours_restore_remote)")"
echo
best=$(avg rclone_tuned); [[ $(echo "$(avg rclone_default) < $best" | bc -l) == 1 ]] && best=$(avg rclone_default)
echo "push: $(ratio "$best" "$(avg ours_push)")x the best rclone (target >= 1)"
echo "resume after a kill at 50%: sent $(ratio "$resume_sent" "$resume_missing")x the missing bytes (target <= 1.10)"
echo "restore from the remote: $(ratio "$(avg ours_restore_remote)" "$(avg ours_restore_local)")x the local restore (target <= 1.2)"
echo "peak RSS of backupctl: push $(( maxrss[ours_push] / 1024 )) MiB, restore --remote $(( maxrss[ours_restore_remote] / 1024 )) MiB (target <= 128)"
