#!/usr/bin/env bash
# A throwaway docker engine for the tests and the compose demo: Debian's dockerd with its own
# socket, data root and exec root, all in DIR, touching nothing of the host's (no iptables, no
# bridge, no ip_forward; flags verified in ../shared/NOTES.md). Images come from no registry:
# `image` builds them locally from a Debian 12 base made by debootstrap with the mirror apt already
# uses, and caches each as a `docker save` tarball between runs (outside the tree).
#   tools/docker-throwaway.sh start DIR          start; prints `export DOCKER_HOST=unix://DIR/docker.sock`
#   tools/docker-throwaway.sh stop DIR           stop it (by its PID), unmount what it left
#   tools/docker-throwaway.sh image DIR NAME CONTEXT_DIR [DOCKERFILE [TARGET]]
#                                                NAME built from CONTEXT_DIR/Dockerfile (or
#                                                DOCKERFILE; up to its stage TARGET) on
#                                                backupctl-test/debian12 (FROM it, or passed as
#                                                the BASE and RUNTIME_BASE build args), loaded
#                                                from the cache when nothing in the context changed
# The cache: $BACKUPCTL_TEST_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/backupctl-test.
# Needs Debian's docker.io and debootstrap (tools/install-deps.sh), and root.
set -euo pipefail

cmd=${1:?usage: docker-throwaway.sh start|stop|image DIR ...}
dir=$(realpath -m "${2:?usage: docker-throwaway.sh start|stop|image DIR ...}")
cache=${BACKUPCTL_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backupctl-test}
# Debian's docker CLI: another one (without compose) may come first on PATH.
docker=/usr/bin/docker
[[ -x $docker ]] || docker=$(command -v docker || true)

alive() { [[ -r /proc/$1/stat ]] && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]]; }

need() {
  command -v "$1" >/dev/null || {
    echo "docker-throwaway: $1 is not installed" >&2
    echo "hint: apt-get install docker.io docker-compose debootstrap (tools/install-deps.sh)" >&2
    exit 1
  }
}

case "$cmd" in
  start)
    need dockerd
    [[ -n $docker ]] || need docker
    if [[ $(id -u) -ne 0 ]]; then
      echo "docker-throwaway: dockerd needs root here (no rootless setup)" >&2
      exit 1
    fi
    mkdir -p "$dir/data" "$dir/exec" "$dir/log"
    # A short exec root: containerd's socket paths must stay under 108 bytes.
    dockerd -H "unix://$dir/docker.sock" --data-root "$dir/data" --exec-root "$dir/exec" \
      --pidfile "$dir/pid" --storage-driver overlay2 --iptables=false --ip-masq=false \
      --ip-forward=false --bridge=none --exec-opt native.cgroupdriver=cgroupfs --userland-proxy=true \
      >>"$dir/log/dockerd.log" 2>&1 </dev/null &
    echo $! >"$dir/dockerd.pid"
    for _ in $(seq 1 200); do
      if DOCKER_HOST="unix://$dir/docker.sock" "$docker" version >/dev/null 2>&1; then
        echo "export DOCKER_HOST=unix://$dir/docker.sock"
        exit 0
      fi
      alive "$(cat "$dir/dockerd.pid")" || break
      sleep 0.1
    done
    echo "docker-throwaway: dockerd did not start; its log ($dir/log/dockerd.log) ends:" >&2
    tail -n 5 "$dir/log/dockerd.log" >&2 || true
    "$0" stop "$dir" >/dev/null 2>&1 || true
    exit 1
    ;;
  stop)
    if [[ -f $dir/dockerd.pid ]]; then
      pid=$(cat "$dir/dockerd.pid")
      if alive "$pid"; then
        # Containers first (compose stacks a test left), then the engine; never by name.
        DOCKER_HOST="unix://$dir/docker.sock" timeout 20 "$docker" ps -q 2>/dev/null |
          xargs -r env DOCKER_HOST="unix://$dir/docker.sock" timeout 20 "$docker" kill >/dev/null 2>&1 || true
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
      fi
      rm -f "$dir/dockerd.pid"
    fi
    # What dockerd leaves mounted (exec/netns/default, overlay mounts of killed containers).
    awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
    ;;
  image)
    name=${3:?usage: docker-throwaway.sh image DIR NAME CONTEXT_DIR [DOCKERFILE [TARGET]]}
    context=$(realpath "${4:?usage: docker-throwaway.sh image DIR NAME CONTEXT_DIR [DOCKERFILE [TARGET]]}")
    dockerfile=$(realpath "${5:-$context/Dockerfile}")
    target=${6:-}
    export DOCKER_HOST=unix://$dir/docker.sock
    mkdir -p "$cache"
    base=backupctl-test/debian12
    if ! "$docker" image inspect "$base" >/dev/null 2>&1; then
      # One maker of each cached file at a time (tests run side by side); who finds it made loads it.
      exec 8>"$cache/rootfs.lock"
      flock 8
      if [[ ! -s $cache/debian12-rootfs.tar ]]; then
        need debootstrap
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        [[ -n $mirror ]] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
        mirror=${mirror:-http://deb.debian.org/debian}
        echo "docker-throwaway: making the Debian 12 base image with debootstrap from $mirror (about a minute, once)" >&2
        rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
        if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1; then
          echo "docker-throwaway: debootstrap failed; see $cache/debootstrap.log" >&2
          rm -rf "$rootfs"
          exit 1
        fi
        tar -C "$rootfs" -cf "$cache/debian12-rootfs.tar.tmp" .
        mv "$cache/debian12-rootfs.tar.tmp" "$cache/debian12-rootfs.tar"
        rm -rf "$rootfs"
      fi
      exec 8>&-
      "$docker" import "$cache/debian12-rootfs.tar" "$base" >/dev/null
    fi
    # The cache key: the Dockerfile, the target and every file of the build context (of a git
    # checkout: the tracked files under CONTEXT_DIR, as committed plus any change not committed).
    if git -C "$context" rev-parse --show-toplevel >/dev/null 2>&1; then
      key=$( { sha256sum "$dockerfile"; echo "target=$target"; git -C "$context" ls-files -s; git -C "$context" diff HEAD -- .; } | sha256sum | cut -c1-16)
    else
      key=$( { sha256sum "$dockerfile"; echo "target=$target"; cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
    fi
    saved=$cache/$(echo "$name" | tr '/:' '__')-$key.tar
    if [[ ! -s $saved ]]; then
      exec 9>"$cache/$(echo "$name" | tr '/:' '__').lock"
      flock 9
    fi
    if [[ -s $saved ]]; then
      "$docker" load -i "$saved" >/dev/null
    else
      echo "docker-throwaway: building $name (once; cached in $cache)" >&2
      # --network host: with --bridge=none a build has no network otherwise, and apt-get update
      # then fails with exit 0.
      if ! "$docker" build -q --network host -f "$dockerfile" --build-arg BASE=$base --build-arg RUNTIME_BASE=$base \
          ${target:+--target "$target"} -t "$name" "$context" >"$saved.log" 2>&1; then
        echo "docker-throwaway: building $name failed; see $saved.log" >&2
        tail -n 5 "$saved.log" >&2
        exit 1
      fi
      rm -f "$cache/$(echo "$name" | tr '/:' '__')"-*.tar
      "$docker" save -o "$saved.tmp" "$name" && mv "$saved.tmp" "$saved"
    fi
    ;;
  *)
    echo "docker-throwaway: unknown command $cmd" >&2
    exit 2
    ;;
esac
