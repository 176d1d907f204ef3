"""Whole training runs of an engine, timed from the outside as a user's job would be.

Each run is the real ``warmstart train`` command in a fresh process on example 1's
configuration (pong, serial sampler, batch 32, replay ratio 8, updates after
``MIN_STEPS_LEARN=1000``), in a scratch checkpoint folder. Speed comes from the run's own
progress.csv (cumulative steps, updates and time per log point), so the numbers are the ones
a user sees; peak memory from the kernel's accounting of the finished process.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from warmstart import config

MIN_STEPS_LEARN = 1000
_WRITTEN = re.compile(r"snapshot itr \d+ cum_steps \d+ written in ([0-9.]+)s")


def _run(settings: dict[str, str]) -> tuple[float, int, str]:
    """``warmstart train`` with ``settings``, and of this environment's settings only DEVICE.

    Any other training setting in the environment (``make`` exports STEPS and CKPT_DIR; a
    user may have DOUBLE_DQN=1 set) would change what is measured, so it is dropped.
    Returns wall seconds, the process's peak RSS in bytes, and its output.
    """
    env = config.without_settings(os.environ) | {"DEVICE": os.environ.get("DEVICE", "auto")}
    env |= settings
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "warmstart", "train"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not all children's
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"warmstart train exited {proc.returncode}:\n{output[-2000:]}")
    return seconds, usage.ru_maxrss * 1024, output  # Linux reports kilobytes


def _rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "progress.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(handle)]


def _learning_rates(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Env steps/s and updates/s over the log windows after learning started.

    The first window that contains updates is left out (it mixes in pre-learning steps);
    the per-window rates show whether speed stays flat as the replay fills.
    """
    learning = [r for r in rows if r["Diagnostics/CumSteps"] > MIN_STEPS_LEARN + 1]
    first, last = learning[0], learning[-1]
    seconds = last["Diagnostics/CumTime (s)"] - first["Diagnostics/CumTime (s)"]
    return {
        "env_steps_per_s": (last["Diagnostics/CumSteps"] - first["Diagnostics/CumSteps"])
        / seconds,
        "updates_per_s": (last["Diagnostics/CumUpdates"] - first["Diagnostics/CumUpdates"])
        / seconds,
        "window_steps_per_s": [round(r["Diagnostics/StepsPerSecond"], 1) for r in learning[1:]],
    }


def train_run(engine: str, learn_steps: int, threads: int, log_every: int) -> dict[str, Any]:
    """One example-1 run of ``engine`` for ``learn_steps`` steps after learning starts.

    A second, 4-step run then warm-starts from the snapshot the first one wrote (58 MB for
    pong), timing a user's restart: process start, snapshot load and check, first steps.
    """
    with tempfile.TemporaryDirectory(prefix="warmstart-bench-") as ckpt:
        settings = {"CKPT_DIR": ckpt, "ENGINE": engine, "GAME": "pong", "SEED": "0",
                    "STEPS": str(MIN_STEPS_LEARN + learn_steps),
                    "MIN_STEPS_LEARN": str(MIN_STEPS_LEARN), "REPLAY_RATIO": "8",
                    "BATCH_SIZE": "32", "LOG_EVERY": str(log_every),
                    "SNAPSHOT_MODE": "last", "TORCH_THREADS": str(threads)}
        seconds, peak_rss, output = _run(settings)
        run_dir = Path(ckpt) / "run_0"
        result = {"engine": engine, "torch_threads": threads, "wall_s": seconds,
                  "peak_rss_bytes": peak_rss, **_learning_rates(_rows(run_dir))}
        writes = [float(s) for s in _WRITTEN.findall(output)]
        result["snapshot_write_s_max"] = max(writes)
        result["snapshot_bytes"] = (run_dir / "params.pkl").stat().st_size
        warm_s, _, warm_output = _run(settings | {"STEPS": "4", "MIN_STEPS_LEARN": "1000"})
        if "warm start from" not in warm_output:
            raise RuntimeError(f"the second run did not warm-start:\n{warm_output[-2000:]}")
        result["warm_start_process_s"] = warm_s
        return result
