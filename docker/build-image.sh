#!/usr/bin/env bash
# Build the image: docker/build-image.sh cuda|cpu [TAG]. Uses docker where an engine answers,
# buildah otherwise. Settings (environment):
#   BASE_IMAGE    the base (default: the Dockerfile's pinned Debian bookworm). Unset and the
#                 registry unreachable, a local Debian base is made with debootstrap (podman).
#   WITH_RLPYT    1 (default) or 0: rlpyt and atari-py in the image or not.
#   RLPYT_SOURCE  a folder holding rlpyt at the pinned commit (offline: no github needed).
#   WHEELS_DIR    a local folder of wheels for pip (e.g. torch's +cpu build; buildah only).
#   BUILD_ARGS    extra arguments for the build command.
set -euo pipefail
cd "$(dirname "$0")/.."
variant="${1:?usage: build-image.sh cuda|cpu [TAG]}"
tag="${2:-localhost/warmstart-dqn:$variant}"
case "$variant" in cuda|cpu) ;; *) echo "build-image.sh: variant must be cuda or cpu, not $variant" >&2; exit 2;; esac
with_rlpyt="${WITH_RLPYT:-1}"
# shellcheck source=docker/podman-env.sh
source docker/podman-env.sh

args=(--target "$variant" --build-arg "VARIANT=$variant" --build-arg "WITH_RLPYT=$with_rlpyt"
      --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
      --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
      --build-arg "VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)")

# The base: as given, else the Dockerfile's default where it can be had, else a local Debian.
if [ -z "${BASE_IMAGE:-}" ]; then
  default_base="$(sed -n 's/^ARG BASE_IMAGE=//p' docker/Dockerfile)"
  if ! base_available "$default_base"; then
    if [ "$ENGINE" = podman ] && command -v debootstrap >/dev/null; then
      echo "build-image.sh: cannot pull $default_base; building on a local Debian bookworm base" \
           "(debootstrap) instead"
      ensure_debian_base
      BASE_IMAGE="$DEBIAN_BASE"
    else
      echo "build-image.sh: cannot pull $default_base: set BASE_IMAGE to a local Debian" \
           "bookworm or Ubuntu 24.04 image (without a registry: apt-get install podman" \
           "debootstrap, and this script makes one)" >&2
      exit 1
    fi
  fi
fi
[ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")

# rlpyt from a local folder: copied into the build context (build/rlpyt-src), never fetched.
rm -rf build/rlpyt-src
if [ -n "${RLPYT_SOURCE:-}" ] && [ "$with_rlpyt" = 1 ]; then
  docker/rlpyt-source.sh "$RLPYT_SOURCE" build/rlpyt-src
  args+=(--build-arg "RLPYT_SOURCE=build/rlpyt-src")
elif [ "$with_rlpyt" = 1 ] && command -v git >/dev/null; then
  rlpyt_url="$(sed -n 's/^rlpyt @ git+\(.*\)@[0-9a-f]*$/\1/p' docker/requirements-rlpyt.txt)"
  if ! timeout 30 git ls-remote "$rlpyt_url" HEAD >/dev/null 2>&1; then
    echo "build-image.sh: $rlpyt_url is unreachable: set RLPYT_SOURCE to a local rlpyt" \
         "checkout at the pinned commit, or WITH_RLPYT=0" >&2
    exit 1
  fi
fi
# A machine that intercepts TLS: hand pip its CA bundle as a build secret (never a layer).
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  args+=(--secret "id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt")
fi
# A local folder of wheels (e.g. torch's +cpu build), mounted read-only into the build.
if [ -n "${WHEELS_DIR:-}" ]; then
  args+=(-v "$WHEELS_DIR:$WHEELS_DIR:ro" --build-arg "PIP_FIND_LINKS=$WHEELS_DIR")
fi
rlpyt_note=""
[ "$with_rlpyt" = 1 ] && rlpyt_note=" with rlpyt${RLPYT_SOURCE:+ from $RLPYT_SOURCE}"
echo "== $BUILD $variant$rlpyt_note -> $tag"
# shellcheck disable=SC2086
$BUILD "${args[@]}" ${BUILD_ARGS:-} -f docker/Dockerfile -t "$tag" .
rm -rf build/rlpyt-src
