"""How many CPUs this process may really use: its CPU affinity, capped by a container's quota.

A Kubernetes pod with ``limits.cpu: 2`` on a 64-core node still sees 64 cores in its affinity
mask; torch running 64 threads under a 2-CPU quota spends most of each period throttled. The
quota is in the cgroup filesystem as container runtimes mount it: ``cpu.max`` (cgroup v2) or
``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` (v1) at the container's cgroup root.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CPU_DIRS = ("cpu", "cpu,cpuacct")


def _quota_v2(root: Path) -> float | None:
    quota, period = (root / "cpu.max").read_text().split()
    return None if quota == "max" else int(quota) / int(period)


def _quota_v1(cpu_dir: Path) -> float | None:
    quota = int((cpu_dir / "cpu.cfs_quota_us").read_text())
    period = int((cpu_dir / "cpu.cfs_period_us").read_text())
    return quota / period if quota > 0 and period > 0 else None  # -1: no quota


def cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in CPUs (quota / period); None when there is none or it cannot be read."""
    try:
        return _quota_v2(root)
    except (OSError, ValueError):
        pass
    for name in V1_CPU_DIRS:
        try:
            return _quota_v1(root / name)
        except (OSError, ValueError):
            continue
    return None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """The affinity's CPU count, at most the quota rounded down, at least 1.

    Rounding down: 1.5 CPUs of quota run one thread at full speed rather than two throttled.
    Without ``sched_getaffinity`` (macOS) the machine's CPU count stands in for the affinity.
    """
    if hasattr(os, "sched_getaffinity"):
        affinity = len(os.sched_getaffinity(0))
    else:
        affinity = os.cpu_count() or 1
    quota = cpu_quota(root)
    return affinity if quota is None else max(1, min(affinity, int(quota)))
