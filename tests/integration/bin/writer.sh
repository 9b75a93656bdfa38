#!/bin/sh
# A stand-in for the app's services in restore tests: a loop that inserts into heartbeat(at) of
# $PGDATABASE every ~20 ms and logs each attempt, for SERVICE_CONTROL=command.
#   writer.sh start DIR   start the loop in the background (pid in DIR/pid), log "<ns> started"
#   writer.sh stop DIR    stop it, log "<ns> stopped"
# DIR/log gets "<ns> ok" or "<ns> fail" per insert.
set -eu
dir=$2
case "$1" in
  start)
    setsid sh -c '
      while :; do
        if psql -X -q -c "INSERT INTO heartbeat VALUES (clock_timestamp())" >/dev/null 2>&1; then
          echo "$(date +%s%N) ok" >> "$0/log"
        else
          echo "$(date +%s%N) fail" >> "$0/log"
        fi
        sleep 0.02
      done' "$dir" </dev/null >/dev/null 2>&1 &
    echo $! > "$dir/pid"
    echo "$(date +%s%N) started" >> "$dir/log"
    ;;
  stop)
    if [ ! -f "$dir/pid" ]; then echo "$(date +%s%N) stopped" >> "$dir/log"; exit 0; fi
    pid=$(cat "$dir/pid")
    kill -- "-$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
    echo "$(date +%s%N) stopped" >> "$dir/log"
    ;;
esac
