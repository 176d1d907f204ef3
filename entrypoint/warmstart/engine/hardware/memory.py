"""How much memory this process may use: its cgroup's limit, else the machine's memory.

A Kubernetes pod with ``limits.memory: 16Gi`` on a 256 GB node sees 256 GB in ``free``; the
kernel OOM-kills it at 16 GiB. The limit is in the cgroup filesystem, as ``cpus`` reads the
CPU quota: for cgroup v2 the lowest ``memory.max`` or ``memory.high`` of the process's own
cgroup (named in ``/proc/self/cgroup`` as ``0::<path>``) and of every parent up to the mount
(a limit on a parent binds its children); for cgroup v1 the lowest ``memory.limit_in_bytes``
of its ``memory`` cgroup and parents. Without a limit, or where none can be read, the
machine's physical memory is the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
V1_UNLIMITED = 1 << 62
"""cgroup v1 writes "no limit" as the largest page multiple below 2**63."""


@dataclass(frozen=True)
class MemoryLimit:
    """The most memory this process may use, in bytes, and the file (or "physical memory")
    that says so."""

    bytes: int
    source: str


def _own_paths(proc_cgroup: Path) -> dict[str, str]:
    """The process's cgroup path per hierarchy: ``""`` for v2's unified one, else the v1
    controllers' names (``memory``)."""
    paths = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    return paths


def _chain(mount: Path, path: str) -> list[Path]:
    """The cgroup folder of ``path`` under ``mount`` and each parent up to the mount. A path
    not under the mount (a container whose cgroup namespace hides it) is the mount itself."""
    folder = mount / path.strip("/")
    if not folder.is_dir():
        return [mount]
    chain = [folder]
    while chain[-1] != mount and mount in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _read_limit(file: Path, unlimited: int) -> int | None:
    try:
        text = file.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < unlimited else None


def cgroup_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> MemoryLimit | None:
    """The lowest memory limit of this process's cgroup and its parents; None without one."""
    own = _own_paths(proc_cgroup)
    found: list[MemoryLimit] = []
    if "" in own:  # cgroup v2 (a hybrid host mounts it at unified/)
        mount = root if (root / "cgroup.controllers").exists() else root / "unified"
        for folder in _chain(mount, own[""]):
            for name in ("memory.max", "memory.high"):
                value = _read_limit(folder / name, 1 << 63)
                if value is not None:
                    found.append(MemoryLimit(value, str(folder / name)))
    if "memory" in own:  # cgroup v1
        for folder in _chain(root / "memory", own["memory"]):
            value = _read_limit(folder / "memory.limit_in_bytes", V1_UNLIMITED)
            if value is not None:
                found.append(MemoryLimit(value, str(folder / "memory.limit_in_bytes")))
    return min(found, key=lambda limit: limit.bytes) if found else None


def memory_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP,
                 physical: int | None = None) -> MemoryLimit:
    """The cgroup's limit when it is below the machine's memory, else the machine's."""
    total = psutil.virtual_memory().total if physical is None else physical
    limit = cgroup_limit(root, proc_cgroup)
    if limit is None or limit.bytes >= total:
        return MemoryLimit(total, "physical memory")
    return limit
