#!/usr/bin/env bash
# Starts and stops the sample app's services (api + worker), for SERVICE_CONTROL=command:
#   SERVICE_STOP_CMD='examples/archive-app/appctl.sh stop RUN_DIR'
#   SERVICE_START_CMD='examples/archive-app/appctl.sh start RUN_DIR'
# Settings come from the environment (PG*, OBJECT_STORAGE..., API_PORT). `start` returns once the
# api answers /api/health (or fails after 15 s).
set -euo pipefail
cmd=${1:?usage: appctl.sh start|stop|status RUN_DIR}
run=${2:?usage: appctl.sh start|stop|status RUN_DIR}
here=$(cd "$(dirname "$0")" && pwd)
bin=${ARCHIVE_APP:-$here/../../build/examples/archive-app/archive-app}
port=${API_PORT:-8000}
mkdir -p "$run"

# Running and not a zombie (a zombie waits for its new parent to reap it, which can take a while).
alive() { [[ -r /proc/$1/stat ]] && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]]; }

stop_one() {
  local pidfile=$run/$1.pid
  [[ -f $pidfile ]] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "$cmd" in
  start)
    if [[ ! -f $run/api.pid ]] || ! alive "$(cat "$run/api.pid")"; then
      setsid "$bin" api --port "$port" >>"$run/api.log" 2>&1 < /dev/null &
      echo $! > "$run/api.pid"
    fi
    if [[ ! -f $run/worker.pid ]] || ! alive "$(cat "$run/worker.pid")"; then
      setsid "$bin" worker >>"$run/worker.log" 2>&1 < /dev/null &
      echo $! > "$run/worker.pid"
    fi
    for _ in $(seq 1 150); do
      curl -fs "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && exit 0
      sleep 0.1
    done
    echo "appctl: the api did not come up on port $port (see $run/api.log)" >&2
    exit 1
    ;;
  stop)
    stop_one api
    stop_one worker
    ;;
  status)
    for s in api worker; do
      if [[ -f $run/$s.pid ]] && alive "$(cat "$run/$s.pid")"; then echo "$s running"; else echo "$s stopped"; fi
    done
    ;;
  *) echo "appctl: unknown command $cmd" >&2; exit 2 ;;
esac
