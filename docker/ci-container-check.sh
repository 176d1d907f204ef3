#!/usr/bin/env bash
# CI on a machine without a Docker engine or registry access (docs/verification.md): build the
# CPU image with buildah on a local Debian base, run it with podman (docker/smoke.sh), check
# its config with skopeo and its SBOM (docker/sbom.sh), lint, and clean the private container
# store afterwards.
# rlpyt is left out (WITH_RLPYT=0): github, where rlpyt is pinned, is not reachable here.
# With RLPYT_SOURCE=DIR (rlpyt checked out at the pinned commit) it also builds the CPU image
# with rlpyt from that folder and smoke-tests it with rlpyt's engine, which ENGINE=auto picks.
set -euo pipefail
cd "$(dirname "$0")/.."
image=localhost/warmstart-dqn:cpu-ci
rlpyt_image=localhost/warmstart-dqn:cpu-rlpyt-ci

need_tools=()
for tool in buildah podman skopeo runc debootstrap shellcheck; do
  command -v "$tool" >/dev/null || need_tools+=("$tool")
done
if [ "${#need_tools[@]}" -gt 0 ]; then
  echo "== installing ${need_tools[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman skopeo runc \
    debootstrap shellcheck >/dev/null
fi

# shellcheck source=docker/podman-env.sh
source docker/podman-env.sh
free_kb="$(df -Pk "$CONTAINER_HOME" | awk 'NR==2 {print $4}')"
need_gb=6
[ -n "${RLPYT_SOURCE:-}" ] && need_gb=9
if [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
  echo "ci-container-check: only $((free_kb / 1024)) MB free under $CONTAINER_HOME;" \
       "building the CPU image(s) needs about $need_gb GB" >&2
  exit 1
fi
cleanup() {
  echo "== cleaning the private container store $CONTAINER_HOME"
  podman rmi -f "$image" "$rlpyt_image" >/dev/null 2>&1 || true
  buildah rm --all >/dev/null 2>&1 || true
  podman system reset --force >/dev/null 2>&1 || true
  rm -rf "$CONTAINER_HOME"
}
trap cleanup EXIT

ensure_debian_base
wheels=()
[ -d /opt/wheels ] && wheels=(WHEELS_DIR=/opt/wheels)
build_cpu() {  # build_cpu TAG WITH_RLPYT
  env BASE_IMAGE="$DEBIAN_BASE" "${wheels[@]}" WITH_RLPYT="$2" \
    BUILD_ARGS="--build-arg TORCH_INDEX=" docker/build-image.sh cpu "$1"
}
# no_build_tools TAG: the runtime stage has no compilers, headers or git (the builder had them).
no_build_tools() {
  podman run --rm --network none --entrypoint bash "$1" -c \
    'for t in cc gcc g++ c++ cmake make git; do command -v $t && exit 1; done;
     ! ls /usr/include/python3*/Python.h 2>/dev/null' \
    || { echo "$1 ships build tools or headers (listed above)" >&2; exit 1; }
  echo "no compilers, headers or git in $1; $(podman image inspect --format '{{.Size}}' "$1" \
    | awk '{printf "%.2f GB", $1 / 1e9}')"
}
build_cpu "$image" 0

echo "== image config (skopeo)"
config="$(skopeo inspect --config "containers-storage:$image")"
python3 - "$config" <<'PY'
import json, sys
cfg = json.loads(sys.argv[1])["config"]
labels = cfg.get("Labels") or {}
problems = []
if cfg.get("User") in (None, "", "0", "root"):
    problems.append(f"runs as root (User={cfg.get('User')!r})")
if cfg.get("Entrypoint", [])[:2] != ["tini", "--"]:
    problems.append(f"entrypoint is not tini-wrapped: {cfg.get('Entrypoint')}")
for key in ("source", "revision", "version", "created"):
    if not labels.get(f"org.opencontainers.image.{key}"):
        problems.append(f"label org.opencontainers.image.{key} missing")
if "CKPT_DIR=/ckpt" not in cfg.get("Env", []):
    problems.append("CKPT_DIR=/ckpt not set")
if problems:
    sys.exit("image config: " + "; ".join(problems))
print(f"user {cfg['User']}, entrypoint {cfg['Entrypoint']}, cmd {cfg.get('Cmd')}, "
      f"revision {labels['org.opencontainers.image.revision'][:12]}")
PY
podman run --rm --network none "$image" --version
podman run --rm --network none --entrypoint cat "$image" /opt/warmstart/versions.txt \
  | grep -E '^(torch|ale-py|numpy)==' || { echo "versions.txt missing pins" >&2; exit 1; }

no_build_tools "$image"
# The SBOM a release would publish must list what the image runs (docs/images.md).
if command -v npm >/dev/null; then
  docker/sbom.sh "$image" "$CONTAINER_HOME/sbom.cdx.json"
else
  echo "== no npm here: the SBOM check (docker/sbom.sh, cdxgen from the npm registry) is skipped"
fi
EXPECT_ENGINE=native docker/smoke.sh "$image"
docker/preemption-drill.sh "$image"  # as a restricted pod, interrupted 14 times (docs/kubernetes.md)

if [ -n "${RLPYT_SOURCE:-}" ]; then
  echo "== the CPU image with rlpyt from RLPYT_SOURCE=$RLPYT_SOURCE"
  build_cpu "$rlpyt_image" 1
  no_build_tools "$rlpyt_image"
  podman run --rm --network none --entrypoint python "$rlpyt_image" -c \
    'import os, atari_py, rlpyt; rom = atari_py.get_game_path("pong"); assert os.path.exists(rom); print("rlpyt", rlpyt.__file__, "ROM", rom)'
  EXPECT_ENGINE=rlpyt docker/smoke.sh "$rlpyt_image"
fi
echo "container checks passed"
