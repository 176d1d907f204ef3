#!/usr/bin/env bash
# CI on a machine without a Docker engine or registry access (see README, "CI"): build the
# CPU image with buildah on a local Debian base, run it with podman (docker/smoke.sh), check
# its config with skopeo, lint, and clean the private container store afterwards.
# rlpyt is left out (WITH_RLPYT=0): github, where rlpyt is pinned, is not reachable here.
set -euo pipefail
cd "$(dirname "$0")/.."
image=localhost/warmstart-dqn:cpu-ci

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
if [ "$free_kb" -lt $((6 * 1024 * 1024)) ]; then
  echo "ci-container-check: only $((free_kb / 1024)) MB free under $CONTAINER_HOME;" \
       "building the CPU image needs about 6 GB" >&2
  exit 1
fi
cleanup() {
  echo "== cleaning the private container store $CONTAINER_HOME"
  podman rmi -f "$image" >/dev/null 2>&1 || true
  buildah rm --all >/dev/null 2>&1 || true
  podman system reset --force >/dev/null 2>&1 || true
  rm -rf "$CONTAINER_HOME"
}
trap cleanup EXIT

ensure_debian_base
wheels=()
[ -d /opt/wheels ] && wheels=(WHEELS_DIR=/opt/wheels)
env BASE_IMAGE=localhost/debian-base:bookworm "${wheels[@]}" \
  BUILD_ARGS="--build-arg WITH_RLPYT=0 --build-arg TORCH_INDEX=" \
  docker/build-image.sh cpu "$image"

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

docker/smoke.sh "$image"
docker/preemption-drill.sh "$image"  # as a restricted pod, interrupted 14 times (README, Kubernetes)
echo "container checks passed"
