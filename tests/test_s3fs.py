"""A run on an S3 bucket mounted with s3fs (docs/volumes.md#s3fs): SIGTERM, kills, outages.

The real `warmstart train` writes its run to a bucket on moto's server, mounted with s3fs
through a proxy the test can take down (tests/s3_volume.py). These tests skip where s3fs, FUSE
or moto's server is missing. How long a stop takes and how many requests a run makes are
printed for docs/volumes.md (`pytest -s`), never asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import FILES_ONLY_RUN, SHORT_RUN
from s3_volume import S3Volume, s3_volume

pytestmark = pytest.mark.drill

WAIT_S = 600
"""Only against a hang: how long a trainer may take to do what a test waits for."""

BUSY = FILES_ONLY_RUN | {"RUN_NAME": "job", "STEPS": "1600", "LOG_EVERY": "80"}
"""A snapshot every 80 steps and no updates: the trainer writes to the bucket most of the
time (a 58 MB snapshot takes s3fs 1.5 to 3 s), so a kill or an outage lands in a write."""
STALL = {"VOLUME_STALL_WARN": "2"}
"""A stalled volume call is said after 2 s, well inside every outage below."""


def _manifest(run: Path) -> dict:
    try:
        return json.loads((run / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wait_for_snapshot(run: Path, trainer: subprocess.Popen, log: Path) -> dict:
    """The run's first snapshot entry, once its manifest lists one."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        entries = _manifest(run).get("snapshots")
        if entries:
            return entries[-1]
        assert trainer.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"no snapshot listed in {WAIT_S}s:\n{log.read_text()}")


def _past_first_snapshot(volume: S3Volume, tmp_path: Path,
                         settings: dict[str, str]) -> tuple[Path, Path, subprocess.Popen]:
    """A trainer on the bucket, once its first snapshot is listed: the run folder, the log
    and the process."""
    run, log = volume.mountpoint / settings["RUN_NAME"], tmp_path / "trainer.log"
    trainer = volume.start(log, settings)
    _wait_for_snapshot(run, trainer, log)
    return run, log, trainer


def _wait_for_line(trainer: subprocess.Popen, log: Path, text: str) -> str:
    """The trainer's output so far, once it holds ``text``."""
    deadline = time.monotonic() + WAIT_S
    while text not in (output := log.read_text()):
        assert trainer.poll() is None and time.monotonic() < deadline, output
        time.sleep(0.1)
    return output


def _wait(trainer: subprocess.Popen, log: Path) -> tuple[int, str]:
    try:
        code = trainer.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the trainer did not end in {WAIT_S}s:\n{log.read_text()}")
    return code, log.read_text()


def _intact(run: Path) -> dict:
    """params.pkl is the snapshot the manifest lists with its sha256; returns its header."""
    listed = {e["file"]: e["sha256"] for e in _manifest(run)["snapshots"]}
    data = (run / "params.pkl").read_bytes()
    assert listed["params.pkl"] == hashlib.sha256(data).hexdigest()
    return torch.load(run / "params.pkl", weights_only=True)


def _finish(volume: S3Volume, log: Path, settings: dict[str, str]) -> str:
    """A restart continues the run from its snapshot on the bucket and reaches the target."""
    run = volume.mountpoint / settings["RUN_NAME"]
    before = volume.requests()
    code, output = _wait(volume.start(log, settings), log)
    assert code == 0, output
    assert "Traceback" not in output, output
    assert f"warm start from {run / 'params.pkl'} (itr " in output, output
    assert _manifest(run)["status"] == "finished"
    # rlpyt's cum_steps: the steps before the last itr began (4 an itr)
    assert _intact(run)["cum_steps"] == int(settings["STEPS"]) - 4
    print(f"{log.stem}: {_count(volume.requests() - before)}")
    return output


def _count(requests: dict[str, int]) -> str:
    by_method = ", ".join(f"{n} {method}" for method, n in sorted(requests.items()))
    return f"{sum(requests.values())} requests ({by_method})"


def _ended_in_one_line(run: Path, code: int, output: str, expected: int) -> None:
    """The trainer exited ``expected`` with one error line naming the run or a file of it, no
    traceback, and left the run's last complete snapshot intact."""
    assert code == expected, output
    assert "Traceback" not in output, output
    assert output.count("warmstart: error: ") == 1, output
    # the run folder itself (a stalled prune lists it) or a file in it
    assert re.search(rf"warmstart: error: {re.escape(str(run))}[/:]", output), output
    _intact(run)


def _said(output: str) -> str:
    """What the trainer said about the volume: how many stall lines, and every other line on
    it (retries, the error)."""
    stalls = output.count("checkpoint volume stalled: ")
    rest = [line for line in output.splitlines()
            if ("checkpoint volume" in line or "error" in line)
            and "checkpoint volume stalled: " not in line]
    return "\n".join([f"{stalls} line(s) 'checkpoint volume stalled: ...'", *rest])


def test_sigterm_ends_with_a_final_snapshot_and_a_restart_finishes(tmp_path: Path) -> None:
    """Cold start on the bucket, SIGTERM mid-run: exit 143 after a final snapshot the manifest
    lists; the restart warm-resumes from it and finishes."""
    settings = SHORT_RUN | {"RUN_NAME": "job", "STEPS": "1200", "LOG_EVERY": "200"}
    with s3_volume(tmp_path) as volume:
        run, log = volume.mountpoint / "job", tmp_path / "cold.log"
        trainer = volume.start(log, settings)
        periodic = _wait_for_snapshot(run, trainer, log)
        time.sleep(1.0)  # into the steps after that snapshot
        sent = time.monotonic()
        trainer.send_signal(signal.SIGTERM)
        code, output = _wait(trainer, log)
        stop_s = time.monotonic() - sent
        assert code == 143, output
        assert "cold start" in output and "Traceback" not in output, output
        assert _manifest(run)["status"] == "stopped"
        final = _intact(run)
        assert periodic["cum_steps"] <= final["cum_steps"] < 1196
        print(f"\nSIGTERM to exit on s3fs: {stop_s:.1f}s; cold run to the stop: "
              f"{_count(volume.requests())}")
        resumed = _finish(volume, tmp_path / "restart.log", settings)
        assert f"(itr {final['itr']}: " in resumed, resumed


def test_random_sigkills_always_resume_from_the_newest_intact_snapshot(tmp_path: Path) -> None:
    """SIGKILL at random moments (seeded: S3_KILL_SEED), a restart after each: every restart
    continues from the newest snapshot, never an older one than the kill left visible (a
    rename s3fs completes after its caller died may make a newer one), never exits 7, and the
    run finally finishes."""
    seed = int(os.environ.get("S3_KILL_SEED", "20261203"))
    rng = random.Random(seed)
    with s3_volume(tmp_path) as volume:
        run, visible = volume.mountpoint / "job", None
        resumed = re.compile(rf"warm start from {re.escape(str(run / 'params.pkl'))} \(itr (\d+): ")
        for kill in range(5):
            log = tmp_path / f"trainer-{kill}.log"
            trainer = volume.start(log, BUSY)
            if kill == 0:
                _wait_for_snapshot(run, trainer, log)
            else:
                output = _wait_for_line(trainer, log, "warm start from")
                said = resumed.search(output)
                assert said and int(said.group(1)) >= visible, \
                    f"kill {kill} (S3_KILL_SEED={seed}): params.pkl of itr {visible}\n{output}"
            _wait_for_line(trainer, log, f"run {run}: engine")  # past start-up: stepping
            time.sleep(rng.uniform(0.5, 10.0))  # a snapshot write every 3 s or so
            assert trainer.poll() is None, f"kill {kill} (S3_KILL_SEED={seed}): ended first"
            trainer.send_signal(signal.SIGKILL)
            _, output = _wait(trainer, log)
            assert "Traceback" not in output, output
            visible = torch.load(run / "params.pkl", weights_only=True)["itr"]
            writing = "writing" in _manifest(run)
            print(f"kill {kill}: params.pkl at itr {visible}"
                  + (" (killed while writing a snapshot)" if writing else ""))
        said = resumed.search(_finish(volume, tmp_path / "last.log", BUSY))
        assert said and int(said.group(1)) >= visible
        print(f"multipart uploads left open on the bucket: {volume.open_uploads()}")


def test_a_short_outage_stalls_then_the_run_continues(tmp_path: Path) -> None:
    """The endpoint refuses connections for 50 s mid-run: longer than s3fs takes to fail a
    call (16 to 30 s, measured), well inside the trainer's retry window (half of a 300 s
    lease): the trainer says the call stalled, retries it when it fails, and the run finishes."""
    settings = BUSY | STALL | {"LOCK_WAIT": "600"}
    with s3_volume(tmp_path) as volume:
        run, log, trainer = _past_first_snapshot(volume, tmp_path, settings)
        volume.proxy.refuse()
        time.sleep(50)
        volume.proxy.up()
        code, output = _wait(trainer, log)
        print("\n" + _said(output))
        assert code == 0, output
        assert "Traceback" not in output, output
        assert re.search(rf"checkpoint volume stalled: \w+ {re.escape(str(run))}[/ ]", output), output
        assert "retry 1 in " in output, output
        assert _manifest(run)["status"] == "finished"
        assert _intact(run)["cum_steps"] == 1596


def test_an_outage_beyond_the_retry_window_exits_10_and_a_restart_resumes(
        tmp_path: Path) -> None:
    """The endpoint stays down until the trainer gives up: exit 10 (the Jobs retry it), the
    last snapshot intact; with the endpoint back, a restart resumes and finishes."""
    settings = BUSY | STALL | {"LOCK_WAIT": "60"}  # a 30 s lease: a short retry window
    with s3_volume(tmp_path) as volume:
        run, log, trainer = _past_first_snapshot(volume, tmp_path, settings)
        volume.proxy.refuse()
        code, output = _wait(trainer, log)
        volume.proxy.up()
        print("\n" + _said(output))
        _ended_in_one_line(run, code, output, 10)
        _finish(volume, tmp_path / "restart.log", settings)


def test_sigterm_during_an_outage_exits_11_and_a_restart_resumes(tmp_path: Path) -> None:
    """The endpoint stops answering (connections held open, unanswered) and a SIGTERM comes
    while a volume call is stalled: one line, exit 11, no traceback, the last complete snapshot
    intact; with the endpoint back, a restart resumes from it and finishes."""
    settings = BUSY | STALL | {"LOCK_WAIT": "600"}
    with s3_volume(tmp_path) as volume:
        run, log, trainer = _past_first_snapshot(volume, tmp_path, settings)
        volume.proxy.hang()
        _wait_for_line(trainer, log, "stalled")
        sent = time.monotonic()
        trainer.send_signal(signal.SIGTERM)
        code, output = _wait(trainer, log)
        stop_s = time.monotonic() - sent
        volume.proxy.up()
        print(f"\nSIGTERM during a stall to exit: {stop_s:.1f}s\n" + _said(output))
        _ended_in_one_line(run, code, output, 11)
        _finish(volume, tmp_path / "restart.log", settings)
