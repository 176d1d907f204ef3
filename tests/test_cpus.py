"""The default thread count: CPU affinity, capped by the CPU quota a container runtime mounts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from warmstart.engine.hardware.cpus import cpu_quota, usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


def _v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def _v1(root: Path, quota: int, period: int = 100000, name: str = "cpu") -> Path:
    cpu = root / name
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (cpu / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(("cpu_max", "quota"), [("200000 100000", 2.0), ("150000 100000", 1.5),
                                                ("max 100000", None)])
def test_reads_a_cgroup_v2_quota(tmp_path: Path, cpu_max: str, quota: float | None) -> None:
    assert cpu_quota(_v2(tmp_path, cpu_max)) == quota


@pytest.mark.parametrize("name", ["cpu", "cpu,cpuacct"])
def test_reads_a_cgroup_v1_quota(tmp_path: Path, name: str) -> None:
    assert cpu_quota(_v1(tmp_path, 300000, name=name)) == 3.0
    assert cpu_quota(_v1(tmp_path / "unlimited", -1, name=name)) is None


def test_no_cgroup_files_or_unreadable_ones_mean_no_quota(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path) is None
    assert cpu_quota(_v2(tmp_path / "garbled", "lots")) is None


def test_a_quota_caps_the_affinity_rounding_down_to_at_least_one(tmp_path: Path) -> None:
    assert usable_cpus(_v2(tmp_path / "half", "50000 100000")) == 1
    assert usable_cpus(_v2(tmp_path / "huge", "100000000 100000")) == AFFINITY
    assert usable_cpus(tmp_path / "none") == AFFINITY
    if AFFINITY >= 2:
        assert usable_cpus(_v2(tmp_path / "one-and-a-half", "150000 100000")) == 1
