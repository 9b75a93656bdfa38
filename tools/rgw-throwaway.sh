#!/usr/bin/env bash
# A throwaway S3 server that checks signatures like AWS and MinIO do: a Ceph RADOS Gateway on one
# monitor and one OSD keeping its objects in memory (memstore), all in DIR, on 127.0.0.1, without
# systemd or a manager. For the tests, the demo's S3 mode and the benchmarks.
#   tools/rgw-throwaway.sh start DIR [PORT]   set up and start; prints export lines:
#                                             RGW_ENDPOINT, RGW_ACCESS_KEY, RGW_SECRET_KEY
#   tools/rgw-throwaway.sh stop DIR           stop the daemons (DIR stays until removed)
#   tools/rgw-throwaway.sh discard DIR        SIGKILL the daemons, for a server whose data goes
#                                             next (a test's: stop waits ~5 s for the OSD)
#   tools/rgw-throwaway.sh kill-rgw DIR       SIGKILL the gateway only (fault tests)
#   tools/rgw-throwaway.sh start-rgw DIR      start the gateway again on its port
# RGW_OBJECTSTORE=bluestore keeps the objects in a sparse file DIR/block instead (of
# RGW_BLOCK_BYTES, 40 GiB): for benchmarks of GB-sized copies, which memstore's 8 GiB (and RGW's
# garbage collection, which frees deleted objects only after hours) cannot hold.
# The keys are fixed per DIR (RGW_ACCESS_KEY=backupctl-test, RGW_SECRET_KEY in DIR/secret_key).
# Needs Debian's ceph-mon, ceph-osd, radosgw and ceph-common.
set -euo pipefail

cmd=${1:?usage: rgw-throwaway.sh start|stop|discard|kill-rgw|start-rgw DIR [PORT]}
dir=$(realpath -m "${2:?usage: rgw-throwaway.sh start|stop|discard|kill-rgw|start-rgw DIR [PORT]}")
conf=$dir/ceph.conf
access_key=backupctl-test

for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
  command -v "$tool" >/dev/null || {
    echo "rgw-throwaway: $tool is not installed" >&2
    echo "hint: apt-get install ceph-mon ceph-osd radosgw ceph-common (tools/install-deps.sh)" >&2
    exit 1
  }
done

# A free loopback port: one nothing answers on, below the kernel's ephemeral range (32768-60999,
# where an outgoing connection may hold it). A race with another starter is possible but rare: the
# daemons then fail to bind and the start fails loudly.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "rgw-throwaway: no free port" >&2
  return 1
}

# Starts a daemon in the foreground mode (-f) in the background, its pid in DIR/run/NAME.pid.
daemon() {
  local name=$1; shift
  "$@" -f >>"$dir/log/$name.out" 2>&1 </dev/null &
  echo $! >"$dir/run/$name.pid"
}

alive() { [[ -r /proc/$1/stat ]] && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]]; }

stop_daemon() {
  local pidfile=$dir/run/$1.pid sig=${2:-TERM}
  [[ -f $pidfile ]] || return 0
  local pid; pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Stops what started, shows the daemon's last log lines, fails.
fail() {
  echo "rgw-throwaway: $1 (in $dir)" >&2
  tail -n 5 "$dir/log/$2.log" "$dir/log/${2%%.*}.out" 2>/dev/null >&2 || true
  for d in rgw osd mon; do stop_daemon "$d"; done
  exit 1
}

wait_http() {
  local port=$1
  for _ in $(seq 1 400); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
    sleep 0.05
  done
  fail "radosgw does not answer on port $port" client.rgw.gw
}

start_rgw() {
  daemon rgw radosgw -c "$conf" -n client.rgw.gw
  wait_http "$(cat "$dir/rgw_port")"
}

case "$cmd" in
  start)
    if [[ -f $dir/rgw_port ]] && [[ -f $dir/run/rgw.pid ]] && alive "$(cat "$dir/run/rgw.pid")"; then
      :  # running already: just print the settings
    else
      rm -rf "$dir"
      mkdir -p "$dir"/{mon,osd,rgw,run,log}
      port=${3:-$(free_port)}
      mon_port=$(free_port)
      echo "$port" >"$dir/rgw_port"
      fsid=$(cat /proc/sys/kernel/random/uuid)
      cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public network = 127.0.0.0/8
ms bind msgr1 = false
ms bind ipv6 = false
keyring = $dir/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
$(if [[ ${RGW_OBJECTSTORE:-memstore} == bluestore ]]; then
  printf 'osd objectstore = bluestore\nbluestore block path = %s/block\nbluestore block create = true\nbluestore block size = %s\nbluestore block db create = false\nbluestore block wal create = false\n' "$dir" "${RGW_BLOCK_BYTES:-42949672960}"
else
  printf 'osd objectstore = memstore\nmemstore device bytes = 8589934592\n'
fi)
osd memory target = 536870912
paxos propose interval = 0.05
paxos min wait = 0.01
run dir = $dir/run
admin socket = $dir/run/\$cluster-\$name.asok
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = true
[mon.a]
mon data = $dir/mon
[osd.0]
osd data = $dir/osd
[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw data = $dir/rgw
CONF
      ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
      ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
        --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
      ceph-authtool "$dir/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' >/dev/null
      ceph-authtool "$dir/keyring" --gen-key -n client.rgw.gw --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
      monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
      ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" >/dev/null 2>&1
      daemon mon ceph-mon -c "$conf" -i a
      up=no
      for _ in $(seq 1 200); do ceph -c "$conf" --connect-timeout 2 mon stat >/dev/null 2>&1 && { up=yes; break; }; sleep 0.05; done
      [[ $up == yes ]] || fail "the monitor did not come up" mon
      osd_uuid=$(cat /proc/sys/kernel/random/uuid)
      ceph -c "$conf" osd new "$osd_uuid" 0 >/dev/null
      ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
      daemon osd ceph-osd -c "$conf" -i 0
      up=no
      for _ in $(seq 1 400); do
        [[ "$(ceph -c "$conf" osd stat -f json 2>/dev/null | grep -o '"num_up_osds":[0-9]*' | cut -d: -f2)" == 1 ]] && { up=yes; break; }
        sleep 0.05
      done
      [[ $up == yes ]] || fail "the OSD did not come up" osd.0
      start_rgw
      head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$dir/secret_key"
      radosgw-admin -c "$conf" user create --uid backupctl --display-name backupctl \
        --access-key "$access_key" --secret-key "$(cat "$dir/secret_key")" >/dev/null
    fi
    echo "export RGW_ENDPOINT=http://127.0.0.1:$(cat "$dir/rgw_port") RGW_ACCESS_KEY=$access_key RGW_SECRET_KEY=$(cat "$dir/secret_key")"
    ;;
  stop)
    for d in rgw osd mon; do stop_daemon "$d"; done
    ;;
  discard)
    for d in rgw osd mon; do stop_daemon "$d" KILL; done
    ;;
  kill-rgw)
    stop_daemon rgw KILL
    ;;
  start-rgw)
    start_rgw
    ;;
  *)
    echo "rgw-throwaway: unknown command $cmd" >&2; exit 2 ;;
esac
