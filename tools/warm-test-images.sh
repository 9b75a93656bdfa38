#!/usr/bin/env bash
# Makes the compose tests' images ahead of the tests, into tools/docker-throwaway.sh's cache:
# the Debian base (debootstrap), the test stack's image and the runtime stage of
# examples/compose/Dockerfile, with the same arguments as tests/integration/compose_test.cpp (so
# the same cache keys). `make test` runs it beside the C++ builds: this work waits on the network
# and the disk, theirs on the CPU, and the tests then find the images made instead of waiting for
# them (about two minutes of CI's test time). Where no docker engine can start (not root, not
# installed) it says so and exits 0: the compose tests report that themselves.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
throwaway=$root/tools/docker-throwaway.sh
dir=$(mktemp -d "${TMPDIR:-/tmp}/backupctl-warm.XXXXXX")
cleanup() { "$throwaway" stop "$dir/engine" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 1' TERM INT HUP
if ! "$throwaway" start "$dir/engine" >/dev/null; then
  echo "warm-test-images: no docker engine here; the compose tests make or skip their images"
  exit 0
fi
"$throwaway" image "$dir/engine" backupctl-test/stack "$root/tests/integration/compose"
"$throwaway" image "$dir/engine" backupctl-test/backupctl-runtime "$root" "$root/examples/compose/Dockerfile" runtime
echo "warm-test-images: the compose tests' images are in the cache"
