#!/usr/bin/env bash
# rlpyt-source.sh DIR DEST: put rlpyt from the local folder DIR into DEST (inside the build
# context) for an offline build. A git checkout must be at the commit pinned in
# docker/requirements-rlpyt.txt and is exported at that commit; a plain exported tree cannot
# be checked and is copied as it is, with one warning line.
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:?usage: rlpyt-source.sh DIR DEST}"
dest="${2:?usage: rlpyt-source.sh DIR DEST}"
pin="$(sed -n 's/^rlpyt @ .*@\([0-9a-f]\{40\}\)$/\1/p' docker/requirements-rlpyt.txt)"

if [ ! -f "$src/setup.py" ] || [ ! -d "$src/rlpyt" ]; then
  echo "RLPYT_SOURCE=$src is not an rlpyt source tree (no setup.py and rlpyt/ in it):" \
       "point it at a checkout of https://github.com/astooke/rlpyt at $pin" >&2
  exit 2
fi
rm -rf "$dest"
mkdir -p "$dest"
top="$(git -C "$src" rev-parse --show-toplevel 2>/dev/null || true)"
if [ -n "$top" ] && [ "$(realpath "$top")" = "$(realpath "$src")" ]; then
  head="$(git -C "$src" rev-parse HEAD)"
  if [ "$head" != "$pin" ]; then
    echo "RLPYT_SOURCE=$src is at commit ${head:0:12}, not the pinned ${pin:0:12}:" \
         "run git -C $src checkout $pin" >&2
    exit 2
  fi
  git -C "$src" archive --format=tar "$pin" | tar -x -C "$dest"
else
  echo "warning: RLPYT_SOURCE=$src is not a git checkout; its commit cannot be checked" \
       "against the pin ${pin:0:12}, building it as it is" >&2
  cp -a "$src/." "$dest/"
fi
