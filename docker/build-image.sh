#!/usr/bin/env bash
# Build the image: docker/build-image.sh cuda|cpu [TAG]. Uses docker where an engine answers,
# buildah otherwise. Extra build-args come from BUILD_ARGS (e.g. "--build-arg WITH_RLPYT=0").
set -euo pipefail
cd "$(dirname "$0")/.."
variant="${1:?usage: build-image.sh cuda|cpu [TAG]}"
tag="${2:-localhost/warmstart-dqn:$variant}"
# shellcheck source=docker/podman-env.sh
source docker/podman-env.sh

args=(--build-arg "VARIANT=$variant"
      --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
      --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
      --build-arg "VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)")
if [ "$variant" = cpu ] && [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE=debian:bookworm-slim
fi
[ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
# A machine that intercepts TLS: hand pip its CA bundle as a build secret (never a layer).
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  args+=(--secret "id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt")
fi
# A local folder of wheels (e.g. torch's +cpu build), mounted read-only into the build.
if [ -n "${WHEELS_DIR:-}" ]; then
  args+=(-v "$WHEELS_DIR:$WHEELS_DIR:ro" --build-arg "PIP_FIND_LINKS=$WHEELS_DIR")
fi
# shellcheck disable=SC2086
echo "== $BUILD $variant -> $tag"
# shellcheck disable=SC2086
$BUILD "${args[@]}" ${BUILD_ARGS:-} -f docker/Dockerfile -t "$tag" .
