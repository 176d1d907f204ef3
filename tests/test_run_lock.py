"""One writer per run folder: a second trainer waits for the first, then exits 5 naming it;
a killed holder leaves no stale lock; starts without RUN_NAME never share a run_N."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch
from conftest import SHORT_RUN, clean_env, warmstart
from warmstart import config
from warmstart.checkpoint import atomic, discovery, lock
from warmstart.checkpoint.counters import Budget
from warmstart.checkpoint.run import RunDir

LONG_RUN = SHORT_RUN | {"STEPS": "100000"}


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def _start_until_running(ckpt: Path, *, said: str = "engine native",
                         **settings: str) -> tuple[subprocess.Popen, str]:
    """Start `warmstart train`; return once it printed ``said`` (by default: its run has
    started, and its folder is locked), with the output so far."""
    proc = subprocess.Popen([sys.executable, "-m", "warmstart", "train"],
                            env=clean_env(CKPT_DIR=str(ckpt), **settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if said in line:
            return proc, "".join(seen)
    raise AssertionError("".join(seen) + proc.communicate()[0])


def _paused(ckpt: Path, **settings: str) -> subprocess.Popen:
    """A trainer that holds its run, then is stopped (SIGSTOP) while the test starts others:
    its lock and lease stay held (a lease of 300 s, longer than any test here) and it leaves
    the cores to the trainers under test. ``_stop`` continues and ends it."""
    proc, _ = _start_until_running(ckpt, LOCK_WAIT="600", **settings)
    proc.send_signal(signal.SIGSTOP)
    return proc


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, output
    return output


def test_second_trainer_on_the_same_run_waits_then_exits_5_naming_the_holder(
        tmp_path: Path) -> None:
    first = _paused(tmp_path, RUN_NAME="job", **LONG_RUN)
    second = warmstart(CKPT_DIR=str(tmp_path), RUN_NAME="job", LOCK_WAIT="1", **LONG_RUN)
    assert second.returncode == 5, second.stdout + second.stderr
    assert "waiting up to 1s" in second.stdout
    error = second.stderr.strip()
    assert len(error.splitlines()) == 1
    assert f"host {socket.gethostname()}, pid {first.pid}, since " in error
    # a SIGTERM ends a wait for the holder at once: nothing of its own was written
    waiting, said = _start_until_running(tmp_path, said="waiting up to 600s", RUN_NAME="job",
                                         LOCK_WAIT="600", **LONG_RUN)
    waiting.send_signal(signal.SIGTERM)
    output = said + waiting.communicate(timeout=120)[0]
    assert waiting.returncode == 143 and "warmstart: stopped by SIGTERM" in output, output
    assert "Traceback" not in output
    _stop(first)
    run = tmp_path / "job"
    manifest = _manifest(run)
    assert manifest["status"] == "stopped" and len(manifest["starts"]) == 1
    final = torch.load(run / "params.pkl", weights_only=True)
    assert manifest["snapshots"][-1]["cum_steps"] == final["cum_steps"]


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    first, _ = _start_until_running(tmp_path, RUN_NAME="job", **SHORT_RUN)
    first.kill()
    first.communicate()
    assert (tmp_path / "job" / lock.FILE).exists()  # the file stays; the kernel dropped the lock
    # a stale lock would make this wait LOCK_WAIT seconds and exit 5
    again = warmstart(CKPT_DIR=str(tmp_path), RUN_NAME="job", LOCK_WAIT="60", **SHORT_RUN)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "waiting" not in again.stdout and "resuming run job" in again.stdout
    assert _manifest(tmp_path / "job")["status"] == "finished"


def test_without_run_name_a_live_trainers_run_is_not_resumed(tmp_path: Path) -> None:
    """The same config as a running trainer's latest run_N: not "this job restarted"."""
    first = _paused(tmp_path, **LONG_RUN)
    second, output = _start_until_running(tmp_path, **LONG_RUN)
    assert "run_0 is being written by another trainer: not resuming it" in output
    assert f"run {tmp_path / 'run_1'}: engine native" in output
    _stop(second)
    _stop(first)
    assert _manifest(tmp_path / "run_0")["status"] == "stopped"
    assert _manifest(tmp_path / "run_1")["status"] == "stopped"


def test_two_starts_never_share_a_run_folder(tmp_path: Path) -> None:
    """Both pick run_0 (neither sees the other's folder yet): the second takes run_1."""
    settings = config.load({"CKPT_DIR": str(tmp_path)})
    runs = [RunDir.create(tmp_path / "run_0", settings, engine="native", n_actions=6,
                          parent=None, budget=Budget(0, 99, 0), log=print) for _ in range(2)]
    assert [r.name for r in runs] == ["run_0", "run_1"]
    for run in runs:
        assert lock.held(run.path)
        assert f"pid {os.getpid()}," in (run.path / lock.FILE).read_text()
        # the lock file is neither a snapshot candidate nor a temp file to sweep
        assert list(discovery.candidates(run.path)) == []
        assert atomic.sweep_temp_files(run.path) == []
        run.release()
        assert not lock.held(run.path)
