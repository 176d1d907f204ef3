"""Training with worker processes stepping the environments: the same results as in one
process, a final snapshot on SIGTERM with no worker left behind, and a dead worker as one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
from conftest import SHORT_RUN, clean_env, warmstart

# 2 x 4: 8 env steps an iteration from four environments, so two workers own two each.
# DETERMINISTIC=1: on a GPU two runs write the same bits only with deterministic kernels (on the
# CPU it changes nothing)
PARALLEL_RUN = SHORT_RUN | {"BATCH_T": "2", "BATCH_B": "4", "STEPS": "320",
                            "MIN_STEPS_LEARN": "240", "LOG_EVERY": "160", "DETERMINISTIC": "1"}


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["agent_state_dict"]
    return {f"{part}.{key}": value for part in ("model", "target")
            for key, value in state[part].items()}


def test_worker_count_does_not_change_what_training_writes(tmp_path: Path) -> None:
    snapshots = []
    for workers in ("1", "2"):
        ckpt = tmp_path / f"workers-{workers}"
        ckpt.mkdir()
        done = warmstart("train", CKPT_DIR=str(ckpt), ENV_WORKERS=workers, **PARALLEL_RUN)
        assert done.returncode == 0, done.stdout + done.stderr
        assert ("worker processes" in done.stdout + done.stderr) == (workers == "2")
        snapshots.append(_tensors(ckpt / "run_0" / "params.pkl"))
    first, second = snapshots
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def _start(ckpt: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """A trainer with two workers, once both are up and it has written a snapshot."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "warmstart", "train"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env=clean_env(CKPT_DIR=str(ckpt), ENV_WORKERS="2", **PARALLEL_RUN | {
            "STEPS": "100000", "LOG_EVERY": "40", "MIN_STEPS_LEARN": "100000"}))
    deadline = time.monotonic() + 180
    while not (ckpt / "run_0" / "params.pkl").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 2, workers
    return proc, workers


def _gone(processes: list[psutil.Process]) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=10)
    return not alive


def test_sigterm_with_workers_ends_with_a_final_snapshot_and_no_worker_left(
        tmp_path: Path) -> None:
    proc, workers = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, output
    assert "final snapshot" in output and "Traceback" not in output
    assert _gone(workers)
    torch.load(tmp_path / "run_0" / "params.pkl", weights_only=True)


def test_a_dead_worker_ends_training_with_one_line_and_exit_9(tmp_path: Path) -> None:
    proc, workers = _start(tmp_path)
    workers[1].kill()
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == 9, output
    assert "Traceback" not in output
    assert [line for line in output.splitlines() if "worker" in line and "died" in line]
    assert _gone(workers)
    torch.load(tmp_path / "run_0" / "params.pkl", weights_only=True)  # the last one stays
