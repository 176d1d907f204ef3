#!/usr/bin/env bash
# Regenerate the hashed lock files the images install from (`make lock`), from the exact pins
# in docker/requirements.txt and docker/requirements-rlpyt.txt:
#   docker/requirements-cuda.lock     the CUDA image: torch's CUDA 13.0 build from PyPI and the
#                                     nvidia-* and triton wheels it pins
#   docker/requirements-cpu.lock      the CPU image: torch's +cpu build, everything else as above
#   docker/requirements-builder.lock  the builder stage: wheel, atari-py (sdist), six, pyprind
# Each package is pinned with the sha256 of its files (docker/lock.py), so the Dockerfile
# installs with --require-hashes. rlpyt is pinned by git commit and cannot carry a pip hash (the
# builder builds it apart). The +cpu torch comes from PyTorch's CPU index (TORCH_CPU_INDEX), or
# from WHEELS_DIR, a folder holding the torch-VERSION+cpu wheel, where that index is
# unreachable. Run it on Linux x86_64 with CPython 3.11, the images' platform: pip resolves for
# the machine it runs on. Needs PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
work=build/lock
tools="$work/venv"
mkdir -p "$work"
if ! cmp -s docker/requirements-tools.txt "$tools/installed.txt"; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check -r docker/requirements-tools.txt
  cp docker/requirements-tools.txt "$tools/installed.txt"
fi
# Only what this script says: no index, find-links or constraint from the machine's pip.conf
# or PIP_* variables (a local +cpu wheel would otherwise satisfy torch==VERSION in the CUDA lock).
while read -r var; do unset "$var"; done < <(compgen -e | grep '^PIP_' || true)
export PIP_CONFIG_FILE=/dev/null
[ -s /etc/ssl/certs/ca-certificates.crt ] && export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
lock() { "$tools/bin/python" docker/lock.py "$@"; }

lock docker/requirements-cuda.lock -r docker/requirements.txt

torch_version="$(sed -n 's/^torch==//p' docker/requirements.txt)"
sed "s/^torch==.*/torch==$torch_version+cpu/" docker/requirements.txt >"$work/requirements-cpu.in"
if [ -n "${WHEELS_DIR:-}" ]; then
  cpu_source=(--find-links "$WHEELS_DIR")
else
  cpu_source=(--extra-index-url "$TORCH_CPU_INDEX")
fi
lock docker/requirements-cpu.lock "${cpu_source[@]}" -r "$work/requirements-cpu.in"

# The builder downloads these with --no-deps (atari-py's numpy comes from the runtime's lock).
{ sed -n 's/^ARG WHEEL_VERSION=/wheel==/p' docker/Dockerfile
  grep -v '^rlpyt @' docker/requirements-rlpyt.txt; } >"$work/requirements-builder.in"
lock docker/requirements-builder.lock --no-deps -r "$work/requirements-builder.in"
echo "locked: docker/requirements-{cuda,cpu,builder}.lock"
