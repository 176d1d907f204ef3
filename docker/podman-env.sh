# shellcheck shell=bash
# Sourced by the image scripts: picks the container tool and, for podman/buildah, the settings
# this sandbox-friendly setup needs (runc, capped ulimits, a private overlay store).
# After sourcing: ENGINE is "docker" or "podman"; BUILD is the build command.

if docker info >/dev/null 2>&1; then
  ENGINE=docker
  BUILD="docker build"
else
  ENGINE=podman
  # docker format: OCI images drop the Dockerfile's SHELL instruction
  BUILD="buildah bud --layers --format docker"
  CONTAINER_HOME="${CONTAINER_HOME:-${TMPDIR:-/tmp}/warmstart-containers}"
  mkdir -p "$CONTAINER_HOME"
  nofile="$(ulimit -Hn)"
  [ "$nofile" = unlimited ] && nofile=65536
  cat >"$CONTAINER_HOME/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
  cat >"$CONTAINER_HOME/storage.conf" <<CONF
[storage]
driver = "overlay"
runroot = "$CONTAINER_HOME/run"
graphroot = "$CONTAINER_HOME/graph"
CONF
  export CONTAINERS_CONF="$CONTAINER_HOME/containers.conf"
  export CONTAINERS_STORAGE_CONF="$CONTAINER_HOME/storage.conf"
fi
export ENGINE BUILD

# A local Debian base for machines that cannot pull one (no registry access).
DEBIAN_BASE=localhost/debian-base:bookworm
ensure_debian_base() {
  local rootfs mirror
  if $ENGINE image exists "$DEBIAN_BASE" 2>/dev/null; then return 0; fi
  rootfs="$(mktemp -d)"
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)"
  echo "== making $DEBIAN_BASE with debootstrap (about a minute)"
  debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
  tar --numeric-owner -C "$rootfs" -c . | $ENGINE import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$DEBIAN_BASE" >/dev/null
  rm -rf "$rootfs"
}

# base_available IMAGE: the image is in the local store or can be pulled (within a minute).
base_available() {
  if [ "$ENGINE" = docker ]; then
    docker image inspect "$1" >/dev/null 2>&1 || timeout 60 docker pull -q "$1" >/dev/null 2>&1
  else
    podman image exists "$1" 2>/dev/null || timeout 60 podman pull -q "$1" >/dev/null 2>&1
  fi
}
