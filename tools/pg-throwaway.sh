#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the demo and the benchmarks (the C++ tests have their own
# fixture). Runs the server as user postgres when called as root.
#   tools/pg-throwaway.sh start DIR [PORT]   initdb into DIR/data if needed, start; prints
#                                            export lines for PGHOST/PGPORT/PGUSER
#   tools/pg-throwaway.sh stop DIR           stop it (the data stays until DIR is removed)
set -euo pipefail

cmd=${1:?usage: pg-throwaway.sh start|stop DIR [PORT]}
dir=$(realpath -m "${2:?usage: pg-throwaway.sh start|stop DIR [PORT]}")
port=${3:-5432}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -x "$bindir/initdb" ]] || { echo "pg-throwaway: no PostgreSQL server installed" >&2; echo "hint: run tools/install-deps.sh" >&2; exit 1; }

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    chmod 755 "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$dir"
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
      as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync --no-instructions >/dev/null
    fi
    # Already running (a benchmark run that was interrupted): reuse it.
    if ! as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
        "-p $port -k $dir -c listen_addresses= -c fsync=off -c full_page_writes=off -c synchronous_commit=off ${PG_EXTRA_OPTS:-}" \
        start >/dev/null
    fi
    echo "export PGHOST=$dir PGPORT=$port PGUSER=postgres"
    ;;
  stop)
    [[ -f "$dir/data/postmaster.pid" ]] && as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  *)
    echo "pg-throwaway: unknown command $cmd" >&2; exit 2 ;;
esac
