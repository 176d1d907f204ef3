"""`make bench` in its quick mode: the benchmark runs end to end and reports every number.

Nothing here judges speed (timings belong to the benchmark's output, not to tests); this keeps
the benchmark itself from rotting as the engine changes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, clean_env

# the benchmark end to end takes minutes: a drill (`make drills`)
pytestmark = pytest.mark.drill


def _on_one_cpu() -> None:
    """Run on one CPU: `make test` runs another test per other core, and the benchmark's
    trainers (threads = usable CPUs) would otherwise wait on threads they cannot run."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})


def test_quick_benchmark_prints_the_table_and_writes_the_json(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "throughput.py"), "--quick", "--out",
         str(tmp_path)], env=clean_env(DEVICE="cpu"), capture_output=True, text=True,
        timeout=600, check=False, preexec_fn=_on_one_cpu)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("limits (each part alone)", "ceiling env steps/s at replay ratio 8",
                 "update's convolutions and matrix products alone",
                 "native / overlapped ceiling", "engines (warmstart train, example 1, timed after step 2000",
                 "acting alone (pong, random actions, one batched forward per step"):
        assert line in result.stdout
    [path] = tmp_path.glob("bench-*.json")
    report = json.loads(path.read_text())
    print(json.dumps(report, indent=1))  # shown when an assertion below fails
    limits, native = report["limits"], report["engines"]["native"]
    assert limits["env_steps_per_s"] > 0 and limits["updates_per_s"]["1"] > 0
    assert set(limits["ceiling_env_steps_per_s"]) == {"serial_1", "serial_2", "overlapped",
                                                      "best"}
    assert native["env_steps_per_s"] > 0 and native["updates_per_s"] > 0
    # the update's convolutions and matrix products are timed for both thread counts (how
    # they compare with a whole update is the benchmark's finding, not a test's)
    for threads in ("1", "2"):
        assert math.isfinite(limits["arithmetic_s_per_update"][threads])
        assert limits["arithmetic_s_per_update"][threads] > 0
    assert limits["arithmetic_bound_env_steps_per_s"] == 4 / min(
        limits["arithmetic_s_per_update"].values())
    # example 1: one update per 4 env steps; both rates divide counts over one window, so
    # their ratio is the count ratio, whatever the machine's speed
    assert abs(native["updates_per_s"] * 4 / native["env_steps_per_s"] - 1) < 0.05
    assert native["snapshot_bytes"] > 50e6  # pong's params.pkl: model, target, Adam moments
    assert 8000 < limits["prioritized"]["rss_bytes_per_transition"] < 9000
    assert report["machine"]["versions"]["torch"]
    # acting alone: B = 1 and 2 at least, each in one process and with worker processes
    acting = report["acting"]["rows"]
    assert [row["B"] for row in acting][:2] == [1, 2]
    for row in acting:
        assert 1 <= row["workers"] <= row["B"]
        assert row["serial_env_steps_per_s"] > 0 and row["parallel_env_steps_per_s"] > 0
        assert f"  {row['B']:3d} " in result.stdout
