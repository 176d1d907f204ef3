"""Write a hashed lock file for pip's --require-hashes mode (run by docker/lock.sh).

    python docker/lock.py OUTPUT [pip resolution options...] -r REQUIREMENTS

pip resolves REQUIREMENTS for this machine's Python and platform (`pip install --dry-run
--report`, nothing is installed), and OUTPUT lists every package it would install, pinned, with
the sha256 of each of that version's files: for a package from PyPI all its files (PyPI's JSON
simple API gives their hashes, so nothing is downloaded), for one from another index or a local
folder the file pip chose (its hash from the index or, for a local file, computed here).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)

PYPI_FILES = "files.pythonhosted.org"
PYPI_SIMPLE = "https://pypi.org/simple/{}/"


def resolve(pip_args: list[str]) -> list[dict]:
    """What pip would install for pip_args, as its installation report's items."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", "-", *pip_args],
        check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout)["install"]


def file_version(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def pypi_hashes(name: str, version: str) -> set[str]:
    """sha256 of every file PyPI has for name==version (PEP 691 JSON, no download)."""
    request = urllib.request.Request(PYPI_SIMPLE.format(canonicalize_name(name)),
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    want = canonicalize_version(version)
    return {f["hashes"]["sha256"] for f in files
            if "sha256" in f.get("hashes", {}) and not f.get("yanked")
            and (v := file_version(f["filename"])) is not None and canonicalize_version(v) == want}


def chosen_hash(download_info: dict) -> str:
    """sha256 of the file pip chose: from the index's answer, else from the local file."""
    archive = download_info.get("archive_info", {})
    if "sha256" in archive.get("hashes", {}):
        return archive["hashes"]["sha256"]
    if archive.get("hash", "").startswith("sha256="):
        return archive["hash"].split("=", 1)[1]
    url = urllib.parse.urlparse(download_info["url"])
    if url.scheme != "file":
        sys.exit(f"lock.py: no sha256 for {download_info['url']}")
    return hashlib.sha256(Path(urllib.parse.unquote(url.path)).read_bytes()).hexdigest()


def main() -> None:
    output, pip_args = Path(sys.argv[1]), sys.argv[2:]
    python = f"CPython {sys.version_info.major}.{sys.version_info.minor}"
    platform = f"{os.uname().sysname.lower()} {os.uname().machine}"
    lines = ["# Hashed lock for pip install --require-hashes. Made by `make lock` (docker/lock.sh)",
             "# from exact pins; do not edit by hand.",
             f"# Resolved for {python} on {platform}."]
    for item in sorted(resolve(pip_args), key=lambda i: canonicalize_name(i["metadata"]["name"])):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        info = item["download_info"]
        if "vcs_info" in info or "dir_info" in info:
            sys.exit(f"lock.py: {name} comes from {info['url']}, which pip cannot check by hash")
        hashes = {chosen_hash(info)}
        host = urllib.parse.urlparse(info["url"]).netloc
        if host == PYPI_FILES:
            hashes |= pypi_hashes(name, version)
        local = Path(urllib.parse.unquote(urllib.parse.urlparse(info["url"]).path)).name
        source = "PyPI" if host == PYPI_FILES else host or f"the local file {local}"
        lines.append(f"{canonicalize_name(name)}=={version} \\")
        lines += [f"    --hash=sha256:{h} \\" for h in sorted(hashes)]
        lines[-1] = lines[-1].removesuffix(" \\")
        lines.append(f"    # from {source}")
    output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
