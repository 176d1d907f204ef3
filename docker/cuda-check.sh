#!/usr/bin/env bash
# Build the CUDA image (torch's CUDA 13.0 wheels from PyPI) and check it on a machine without a
# GPU: `warmstart --version`; torch imports with its CUDA libraries (cuDNN loads) and the
# image holds one copy of them; the config declares the driver floor to the container
# toolkit; and on a faked GPU that torch cannot use (a /dev/nvidia0 node and a libcuda.so.1
# whose driver says CUDA 12.2, bind-mounted as the toolkit would) the trainer stops with
# exit 6 and one line, while DEVICE=cpu still trains.
# Usage: docker/cuda-check.sh [TAG]. BASE_IMAGE, WITH_RLPYT, RLPYT_SOURCE as for build-image.sh;
# without a registry the base is made locally (debootstrap). Needs about 12 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-localhost/warmstart-dqn:cuda}"
# shellcheck source=docker/podman-env.sh
source docker/podman-env.sh
fail() { echo "CUDA CHECK FAILED: $*" >&2; exit 1; }
run() { $ENGINE run --rm --network none "$@"; }

docker/build-image.sh cuda "$image"
echo "== built in ${SECONDS}s"

echo "== image config: the driver floor where the container toolkit reads it"
env_lines="$($ENGINE image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image")"
for want in 'NVIDIA_REQUIRE_CUDA=cuda>=13.0' NVIDIA_VISIBLE_DEVICES=all \
            NVIDIA_DRIVER_CAPABILITIES=compute,utility; do
  grep -qxF "$want" <<<"$env_lines" || fail "$want not in the image's environment"
done

echo "== warmstart --version"
run "$image" --version

echo "== torch and its CUDA libraries"
run -i --entrypoint python "$image" - <<'PY' || fail "torch's CUDA libraries do not load"
import glob, os, sysconfig
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"GPU usable: {torch.cuda.is_available()}")
copies = {}
for root in ("/usr", "/opt"):
    for path in glob.glob(f"{root}/**/libcudart.so*", recursive=True) + \
            glob.glob(f"{root}/**/libcudnn.so*", recursive=True):
        copies.setdefault(os.path.basename(path).split(".so")[0], set()).add(os.path.realpath(path))
print("CUDA runtime and cuDNN in the image:", copies)
assert all(len(paths) == 1 for paths in copies.values()), "more than one copy"
PY

echo "== a GPU that torch cannot use: exit 6 and one line"
fake="$(mktemp -d)"
vol="$(mktemp -d)"
trap 'rm -rf "$fake" "$vol"' EXIT
chown 1000:1000 "$vol" 2>/dev/null || chmod 0777 "$vol"
touch "$fake/nvidia0"
gpu=(-v "$fake/nvidia0:/dev/nvidia0")
if command -v cc >/dev/null; then
  # What a 535 driver's libcuda answers; the toolkit mounts the real one at this path.
  echo 'int cuDriverGetVersion(int *v) { *v = 12020; return 0; }' >"$fake/libcuda.c"
  cc -shared -fPIC -o "$fake/libcuda.so.1" "$fake/libcuda.c"
  gpu+=(-v "$fake/libcuda.so.1:/usr/lib/x86_64-linux-gnu/libcuda.so.1:ro")
fi
short=(-e STEPS=400 -e MIN_STEPS_LEARN=300 -e REPLAY_SIZE=2000 -e LOG_EVERY=200)
set +e
out="$(run "${gpu[@]}" -v "$vol:/ckpt" "${short[@]}" "$image" 2>&1)"
code=$?
set -e
echo "$out"
[ "$code" = 6 ] || fail "faked GPU: exit $code, expected 6"
[ "$(wc -l <<<"$out")" = 1 ] || fail "expected one line"
grep -q "built for CUDA 13.0" <<<"$out" || fail "the line does not name torch's CUDA version"
if [ -f "$fake/libcuda.so.1" ]; then
  grep -q "driver for CUDA 12.2" <<<"$out" || fail "the line does not name the driver's CUDA version"
fi
[ -z "$(ls -A "$vol")" ] || fail "the stopped run wrote into the volume"

echo "== DEVICE=cpu on the same node trains on the CPU on purpose"
out="$(run "${gpu[@]}" -v "$vol:/ckpt" "${short[@]}" -e DEVICE=cpu "$image" 2>&1)" \
  || fail "DEVICE=cpu exited $?: $out"
grep -q "device cpu" <<<"$out" || fail "DEVICE=cpu did not train on the CPU: $out"
echo "CUDA image checks passed in ${SECONDS}s: $image"
