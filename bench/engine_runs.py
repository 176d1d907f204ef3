"""Whole training runs of an engine, timed from the outside as a user's job would be.

Each run is the real ``warmstart train`` command in a fresh process on example 1's
configuration (pong, serial sampler, batch 32, replay ratio 8, updates after
``MIN_STEPS_LEARN=1000``), in a scratch checkpoint folder, with one change: epsilon reaches
its final 0.01 at step 2,000 (``EPS_STEPS``) instead of 1M, so the measured steps are the
steady state where the network picks 99% of the actions (at epsilon 1 it is never asked).
Speed comes from the run's own progress.csv (cumulative steps, updates and time per log
point) after that step, so the numbers are the ones a user sees; peak memory from the
process's own high-water mark.
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
EPS_STEPS = 2000
_WRITTEN = re.compile(r"snapshot itr \d+: .* written in ([0-9.]+)s")


def _peak_rss(pid: int) -> int:
    """The process's resident high-water mark so far (VmHWM), in bytes; 0 once it has exited.

    Unlike the kernel's ru_maxrss for a child, VmHWM starts afresh at exec, so it does not
    include the benchmark process the child was forked from.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    # an exited, not yet reaped process (a zombie) has a status file without memory lines
    kilobytes = next((line.split()[1] for line in status.splitlines()
                      if line.startswith("VmHWM")), "0")
    return int(kilobytes) * 1024


def _run(settings: dict[str, str]) -> tuple[float, int, str]:
    """``warmstart train`` with ``settings``, and of this environment's settings only DEVICE.

    Any other training setting in the environment (``make`` exports STEPS and CKPT_DIR; a
    user may have DOUBLE_DQN=1 set) would change what is measured, so it is dropped.
    Returns wall seconds, the process's peak RSS in bytes (polled every 0.2 s: a peak in
    the last 0.2 s before exit is missed), and its output.
    """
    env = config.without_settings(os.environ) | {"DEVICE": os.environ.get("DEVICE", "auto")}
    env |= settings
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "warmstart", "train"], env=env,
                                stdout=output, stderr=subprocess.STDOUT, text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _peak_rss(proc.pid))
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        output.seek(0)
        text = output.read()
    if proc.returncode != 0:
        raise RuntimeError(f"warmstart train exited {proc.returncode}:\n{text[-2000:]}")
    return seconds, peak, text


def _rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "progress.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(handle)]


def _learning_rates(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Env steps/s and updates/s over the log windows after ``EPS_STEPS``.

    By then updates run every iteration and epsilon is final; the per-window rates show
    whether speed stays flat as the replay fills.
    """
    after = [r for r in rows if r["Diagnostics/CumSteps"] >= EPS_STEPS]
    if len(after) < 2:
        raise RuntimeError(f"progress.csv needs two log points at or after step {EPS_STEPS}; "
                           f"it has {[r.get('Diagnostics/CumSteps') for r in rows]}")
    first, steady = after[0], after[1:]
    last = steady[-1]
    seconds = last["Diagnostics/CumTime (s)"] - first["Diagnostics/CumTime (s)"]
    return {
        "env_steps_per_s": (last["Diagnostics/CumSteps"] - first["Diagnostics/CumSteps"])
        / seconds,
        "updates_per_s": (last["Diagnostics/CumUpdates"] - first["Diagnostics/CumUpdates"])
        / seconds,
        "window_steps_per_s": [round(r["Diagnostics/StepsPerSecond"], 1) for r in steady],
    }


def train_run(engine: str, learn_steps: int, threads: int, log_every: int,
              shape: dict[str, str] | None = None) -> dict[str, Any]:
    """One example-1 run of ``engine`` for ``learn_steps`` steps after ``EPS_STEPS``
    (or of another sampler shape and batch size: ``shape``'s BATCH_T, BATCH_B, BATCH_SIZE).

    A second, 4-step run then warm-starts from the snapshot the first one wrote (58 MB for
    pong), timing a user's restart: process start, snapshot load and check, first steps.
    """
    with tempfile.TemporaryDirectory(prefix="warmstart-bench-") as ckpt:
        settings = {"CKPT_DIR": ckpt, "ENGINE": engine, "GAME": "pong", "SEED": "0",
                    "STEPS": str(EPS_STEPS + learn_steps),
                    "EPS_STEPS": str(EPS_STEPS),
                    "MIN_STEPS_LEARN": str(MIN_STEPS_LEARN), "REPLAY_RATIO": "8",
                    "BATCH_SIZE": "32", "LOG_EVERY": str(log_every),
                    "SNAPSHOT_MODE": "last", "TORCH_THREADS": str(threads)} | (shape or {})
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
