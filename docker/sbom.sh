#!/usr/bin/env bash
# docker/sbom.sh IMAGE [OUT]: the SBOM of a locally built image, made from its files, to check
# that what a release publishes is real (docs/images.md, "The SBOM of a local build").
# cdxgen (pinned below, from the npm registry) reads the image's root file system: dpkg's status
# file for Debian's packages, the venv's dist-info folders for the Python packages. It writes
# CycloneDX JSON to OUT (default build/sbom/IMAGE-NAME.cdx.json); this script then checks that
# torch, numpy, ale-py and Debian's packages are listed with versions, and prints a summary.
# Needs podman (the image in its store: docker/build-image.sh puts it there), node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
CDXGEN_VERSION=12.8.4
image="${1:?usage: sbom.sh IMAGE [OUT]}"
out="${2:-build/sbom/$(tr -c 'A-Za-z0-9._-\n' '_' <<<"${image##*/}").cdx.json}"
tools=build/sbom-tools
cdxgen="$tools/node_modules/.bin/cdxgen"
if [ ! -x "$cdxgen" ] || [ "$("$cdxgen" --version 2>/dev/null | tail -1)" != "$CDXGEN_VERSION" ]; then
  npm install --prefix "$tools" --no-audit --no-fund --no-save --silent "@cyclonedx/cdxgen@$CDXGEN_VERSION"
fi
# shellcheck source=docker/podman-env.sh
source docker/podman-env.sh
if [ "$ENGINE" != podman ]; then
  echo "sbom.sh: reads the image through podman; with docker: docker save IMAGE -o image.tar" \
       "and $cdxgen -t docker image.tar" >&2
  exit 2
fi
mkdir -p "$(dirname "$out")"
rootfs="$(podman image mount "$image")"
trap 'podman image unmount "$image" >/dev/null' EXIT
# No network: licences are not fetched, nothing is installed.
FETCH_LICENSE=false "$cdxgen" -t rootfs --no-install-deps --spec-version 1.6 -o "$out" "$rootfs" \
  >"$out.log" 2>&1 || { tail -20 "$out.log" >&2; exit 1; }

python3 - "$out" <<'PY'
import collections, json, sys
bom = json.load(open(sys.argv[1]))
components = bom.get("components", [])
def kind(c):
    return c.get("purl", "").split("/")[0].removeprefix("pkg:") or "(no purl)"
def installed(c):  # found in a dist-info folder of the venv, not only named in a requirements file
    return any(p.get("name") == "SrcFile" and "/opt/venv/" in p.get("value", "")
               and p["value"].endswith(".dist-info/METADATA") for p in c.get("properties", []))
debs = {c["name"]: c.get("version") for c in components if kind(c) == "deb"}
pypi = {c["name"].lower(): c.get("version") for c in components if kind(c) == "pypi" and installed(c)}
problems = [f"no {name} with a version" for name, table in
            [("torch", pypi), ("numpy", pypi), ("ale-py", pypi), ("python3", debs), ("tini", debs)]
            if not table.get(name)]
if len(debs) < 50:
    problems.append(f"only {len(debs)} Debian packages")
print(f"{sys.argv[1]}: CycloneDX {bom.get('specVersion')}, {len(components)} components:",
      ", ".join(f"{n} {k}" for k, n in collections.Counter(map(kind, components)).most_common()))
print(f"  Debian: {len(debs)} packages, e.g.",
      ", ".join(f"{n} {debs[n]}" for n in ("python3", "python3.11", "libc6", "tini", "ca-certificates") if n in debs))
print(f"  Python: {len(pypi)} packages installed in /opt/venv, e.g.",
      ", ".join(f"{n} {pypi[n]}" for n in ("torch", "numpy", "ale-py", "opencv-python-headless", "warmstart-dqn", "rlpyt", "atari-py") if n in pypi))
if problems:
    sys.exit("SBOM incomplete: " + "; ".join(problems))
PY
