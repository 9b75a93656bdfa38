#!/bin/sh
# A stand-in for the app's services in restore tests: a loop that inserts into heartbeat(at) of
# $PGDATABASE every ~200 ms, a new connection each time, and logs each attempt, for
# SERVICE_CONTROL=command. It calls the server's own psql, not Debian's perl wrapper: the wrapper
# made each insert cost ~100 ms of CPU (54 ms without), and a writer every 20 ms kept one core
# busy through every test that ran one.
#   writer.sh start DIR   start the loop in the background (pid in DIR/pid), log "<ns> started";
#                         when it runs already, only log
#   writer.sh stop DIR    stop it, log "<ns> stopped"
# DIR/log gets "<ns> ok" or "<ns> fail" per insert.
set -eu
dir=$2
# Running and not a zombie (PID 1 reaps orphans slowly here, and kill -0 succeeds on a zombie).
alive() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }
case "$1" in
  start)
    # Like `docker compose start`: starting what runs already changes nothing.
    if [ -f "$dir/pid" ] && alive "$(cat "$dir/pid")"; then
      echo "$(date +%s%N) started" >> "$dir/log"
      exit 0
    fi
    psql=psql
    for b in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do psql=$b/psql; done
    setsid sh -c '
      while :; do
        if "$1" -X -q -c "INSERT INTO heartbeat VALUES (clock_timestamp())" >/dev/null 2>&1; then
          echo "$(date +%s%N) ok" >> "$0/log"
        else
          echo "$(date +%s%N) fail" >> "$0/log"
        fi
        sleep 0.2
      done' "$dir" "$psql" </dev/null >/dev/null 2>&1 &
    echo $! > "$dir/pid"
    echo "$(date +%s%N) started" >> "$dir/log"
    ;;
  stop)
    if [ ! -f "$dir/pid" ]; then echo "$(date +%s%N) stopped" >> "$dir/log"; exit 0; fi
    pid=$(cat "$dir/pid")
    kill -- "-$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.01; done
    rm -f "$dir/pid"
    echo "$(date +%s%N) stopped" >> "$dir/log"
    ;;
esac
