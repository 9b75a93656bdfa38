#!/bin/sh
# Stops or starts the stack's app containers from inside the backupctl container (through the
# mounted docker socket), found by their compose labels, for SERVICE_CONTROL=command:
#   SERVICE_STOP_CMD="compose-services stop"   SERVICE_START_CMD="compose-services start"
# COMPOSE_PROJECT (the stack's project name) and APP_SERVICES ("api worker beat") pick them.
set -eu
action=${1:?usage: compose-services stop|start}
project=${COMPOSE_PROJECT:?set COMPOSE_PROJECT to the compose project name of the stack}
ids=""
for service in ${APP_SERVICES:-api worker beat}; do
  found=$(docker ps -aq --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$service")
  ids="$ids $found"
done
# shellcheck disable=SC2086  # word splitting of the id list is wanted
set -- $ids
if [ $# -eq 0 ]; then
  echo "compose-services: no containers of ${APP_SERVICES:-api worker beat} in project $project" >&2
  exit 1
fi
exec docker "$action" "$@"
