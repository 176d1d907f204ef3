"""Output nobody reads any more never costs a run: `| head`, a `tee` killed first, a full disk.

Each test runs the real `warmstart` command with stdout/stderr on a pipe whose reader has gone
(or on /dev/full, which fails every write with ENOSPC) and checks the volume afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from conftest import FILES_ONLY_RUN, SHORT_RUN, clean_env

WARMSTART = [sys.executable, "-m", "warmstart"]


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_train_piped_into_head_trains_to_the_end(tmp_path: Path) -> None:
    """`warmstart train | head -c 200`: head exits after the first lines, training goes on."""
    # no updates (MIN_STEPS_LEARN beyond the run): this is about the output, not learning
    env = clean_env(CKPT_DIR=str(tmp_path), **(FILES_ONLY_RUN | {"LOG_EVERY": "40"}))
    errors = tmp_path / "stderr.txt"
    done = subprocess.run(
        ["bash", "-c", f'"$@" 2>{errors} | head -c 200 >/dev/null; exit "${{PIPESTATUS[0]}}"',
         "bash", *WARMSTART, "train"], env=env, timeout=600, check=False)
    assert done.returncode == 0, errors.read_text()
    assert errors.read_text() == ""  # no "Exception ignored ... BrokenPipeError" at exit
    run = tmp_path / "run_0"
    assert _manifest(run)["status"] == "finished"
    assert torch.load(run / "params.pkl", weights_only=True)["cum_steps"] == 396


def test_sigint_after_the_reader_died_still_writes_the_final_snapshot(tmp_path: Path) -> None:
    """`make train | tee out`, Ctrl-C: tee dies first, the handler's log line hits a dead
    pipe. The final snapshot, exit 130 and the "stopped" status must not depend on it."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [*WARMSTART, "train"], stdout=write_end, stderr=write_end,
        env=clean_env(CKPT_DIR=str(tmp_path), **(SHORT_RUN | {"STEPS": "100000"})))
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        for line in reader:
            if "engine native" in line:  # the run has started: the handlers are in place
                break
    # the reader is gone now, before the signal: every line the trainer writes from here fails
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    run = tmp_path / "run_0"
    assert _manifest(run)["status"] == "stopped"
    final = torch.load(run / "params.pkl", weights_only=True)
    assert _manifest(run)["snapshots"][-1]["cum_steps"] == final["cum_steps"]


def test_error_line_to_a_closed_stderr_keeps_its_exit_code(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open("/dev/full", "w") as full:  # stdout on a full disk (ENOSPC), stderr a dead pipe
        done = subprocess.run([*WARMSTART, "train"], stdout=full, stderr=write_end,
                              env=clean_env(CKPT_DIR=str(tmp_path), GAME="nonsense"),
                              timeout=120, check=False)
    os.close(write_end)
    assert done.returncode == 2
