"""How long ``warmstart report`` takes on a volume with hundreds of runs.

``make_volume`` writes a volume of N run folders as a sweep would leave them: a manifest
written by the trainer's own RunDir, a progress.csv of a 2M-step run at the default
LOG_EVERY (200 rows of the trainer's 50 columns, an evaluation every 5th row) and statuses
mixed over running, finished, stopped and abandoned (set through the manifest's mtime). No
snapshot files: the report never opens them. tests/test_report.py uses the same volume.

    python bench/report_volume.py [--runs 500] [--rows 200]

prints the time of a whole ``warmstart report`` process (Python, imports and all) and of the
scan alone, best of 3.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from warmstart.checkpoint.counters import Budget
from warmstart.checkpoint.rows import PROGRESS
from warmstart.checkpoint.run import RunDir
from warmstart.config import EXAMPLE_1, Config

GAMES = ("pong", "breakout", "seaquest", "qbert", "space_invaders")
STATS = ("Length", "Return", "NonzeroRewards", "DiscountedReturn", "GameScore", "loss",
         "gradNorm", "tdAbsErr")
DIAGNOSTICS = ("Iteration", "CumTime (s)", "CumSteps", "CumCompletedTrajs", "CumUpdates",
               "StepsPerSecond", "UpdatesPerSecond", "ReplayRatio")
STATUSES = ("running", "finished", "stopped", "abandoned")
LOG_EVERY = 10_000


def _progress_rows(rows: int, rng: random.Random) -> list[dict[str, float]]:
    out = []
    for i in range(rows):
        cum_steps = (i + 1) * LOG_EVERY
        row: dict[str, float] = {f"Diagnostics/{name}": rng.random() for name in DIAGNOSTICS}
        row["Diagnostics/Iteration"] = cum_steps // EXAMPLE_1.steps_per_itr - 1
        row["Diagnostics/CumSteps"] = cum_steps
        row |= {"Epsilon": 0.01, "LearningRate": 0.00025}
        for stat in STATS:
            for kind in ("Average", "Std", "Median", "Min", "Max"):
                row[f"{stat}{kind}"] = round(rng.uniform(-21, 21), 3)
        if i % 5 == 4:
            row |= {"Diagnostics/TrajsInEval": 10, "Eval/GameScoreAverage": rng.uniform(-21, 21)}
        out.append(row)
    return out


def _write_progress(run_dir: Path, rows: list[dict[str, float]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with open(run_dir / PROGRESS, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def make_volume(root: Path, runs: int, *, rows: int = 200, seed: int = 0,
                now: float | None = None) -> dict[str, str]:
    """Write ``runs`` run folders under ``root``; returns each run's status as the report
    should show it (abandoned: running, manifest written two hours before ``now``)."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    expected = {}
    for i in range(runs):
        game, run_seed = GAMES[i % len(GAMES)], i // len(GAMES)
        name = f"sweep-{game}-s{run_seed}"
        target_itr = rows * LOG_EVERY // EXAMPLE_1.steps_per_itr - 1  # as a run of STEPS = rows x LOG_EVERY
        status = STATUSES[i % len(STATUSES)]
        logged = rows if status == "finished" else rng.randint(1, rows)
        config = Config(ckpt_dir=root, run_name=name, game=game, seed=run_seed,
                        steps=rows * LOG_EVERY)
        run = RunDir.create(root / name, config, engine="native", n_actions=6, parent=None,
                            budget=Budget(0, target_itr, 0), log=lambda _line: None)
        _write_progress(run.path, _progress_rows(logged, rng))
        itr = logged * LOG_EVERY // EXAMPLE_1.steps_per_itr - 1  # the log point's snapshot, as rlpyt counts
        run.manifest["snapshots"] = [{"file": "params.pkl", "itr": itr,
                                      "cum_steps": itr * EXAMPLE_1.steps_per_itr, "sha256": "0" * 64}]
        run.mark("running" if status == "abandoned" else status)
        age = 7200 if status == "abandoned" else rng.uniform(0, 600)
        run.release()  # a generated run has no live trainer
        os.utime(run.path / "manifest.json", (now - age, now - age))
        expected[name] = {"stopped": "stopped by a signal"}.get(status, status)
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()
    from warmstart.reporting.report import scan

    with tempfile.TemporaryDirectory() as folder:
        volume = Path(folder)
        started = time.perf_counter()
        make_volume(volume, args.runs, rows=args.rows)
        print(f"volume of {args.runs} runs x {args.rows} progress rows written in "
              f"{time.perf_counter() - started:.1f} s")
        command = [sys.executable, "-m", "warmstart", "report", str(volume)]
        whole, alone = [], []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            whole.append(time.perf_counter() - started)
            started = time.perf_counter()
            scan(volume, 3600)
            alone.append(time.perf_counter() - started)
        print(f"warmstart report (whole process): {min(whole):.2f} s; "
              f"scan alone: {min(alone):.2f} s (best of 3)")


if __name__ == "__main__":
    main()
