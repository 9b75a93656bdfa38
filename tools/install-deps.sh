#!/usr/bin/env bash
# Installs the Debian 12 packages backupctl needs to build, test and run its demo.
# Idempotent: when every package is already installed it does nothing (no apt-get update).
# Usage: tools/install-deps.sh [--print]   (--print lists the missing packages and exits)
set -euo pipefail

packages=(
  # build
  g++ cmake ninja-build make pkg-config git
  # libraries
  libpq-dev libcurl4-openssl-dev libarchive-dev libssl-dev libzstd-dev zlib1g-dev libisal-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libpugixml-dev
  libtomlplusplus-dev libcpp-httplib-dev
  # runtime tools the tool drives, and what the tests and demo need
  postgresql-15 postgresql-client-15 zstd util-linux procps time bc gzip curl
  # backups made with a clock that is off (the tests of "latest" and retention)
  faketime
  # the S3 test server (Ceph's RADOS Gateway) and the independent S3 client
  ceph-mon ceph-osd radosgw ceph-common awscli
  # the container engine, both compose front ends' tests and the base image of the test stack
  docker.io docker-compose debootstrap
  # encryption at rest
  age
  # promtool: the tests of the shipped alert rules (examples/monitoring)
  prometheus
  # `make coverage`
  gcovr
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ "${1:-}" == "--print" ]]; then
  printf '%s\n' "${missing[@]}"
  exit 0
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then sudo=(sudo); else
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "hint: run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
