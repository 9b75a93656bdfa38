#!/bin/sh
# The `postgres` service: initdb on the first start (password auth over TCP, the unix socket
# trusted inside the container), then the server in the foreground.
set -eu
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/data
if [ ! -s "$data/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > "$pw"
  "$bin/initdb" -D "$data" -U "${POSTGRES_USER:-postgres}" --pwfile="$pw" --auth-host=scram-sha-256 \
    --auth-local=trust >/dev/null
  rm -f "$pw"
  "$bin/pg_ctl" -D "$data" -o "-c listen_addresses= -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
  "$bin/psql" -X -q -h /var/run/postgresql -U "${POSTGRES_USER:-postgres}" -d postgres \
    -c "CREATE DATABASE ${POSTGRES_DB:-archive}"
  "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
fi
exec "$bin/postgres" -D "$data" -c listen_addresses="${PG_LISTEN:-127.0.0.1}" -c port="${PGPORT:-5432}" \
  -c unix_socket_directories=/var/run/postgresql
