"""A stalled or failing checkpoint volume is said, and retried where retry can help.

The real `warmstart train` runs on the FUSE test volume (tests/fusefs.py), which is made to
stop answering (``stall on``: every call blocks, as s3fs does while its S3 endpoint is down)
or to fail calls with EIO (``fail``), in the middle of a run. To land there whatever the
machine's speed, the volume first holds a chosen step of a chosen snapshot write (``pause``),
the stall or the failures are armed, and then the step is let go: the trainer's next volume
call meets them. No test measures a time: each waits for a line or an exit, and bounds a wait
only against a hang.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from conftest import FILES_ONLY_RUN, warmstart
from fuse_volume import WAIT_S, Volume, fuse_volume

# Four log points (a progress row, then a snapshot), no updates.
SETTINGS = FILES_ONLY_RUN | {"RUN_NAME": "job", "LOG_EVERY": "100", "VOLUME_STALL_WARN": "1"}
ANCHOR = ".progress.csv.tmp-"
"""The n-th snapshot write of a process follows its n-th progress.csv rename."""
HOLD = "create .manifest.json.tmp-"
"""The first step of a snapshot write: the manifest naming the write in progress."""
STALLED = "checkpoint volume stalled: "


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wait_for(log: Path, text: str, trainer: subprocess.Popen, *, count: int = 1) -> None:
    """Until the trainer's output holds ``text`` ``count`` times (it must not end first)."""
    for _ in range(WAIT_S * 10):
        if log.read_text().count(text) >= count:
            return
        if trainer.poll() is not None:
            raise AssertionError(f"the trainer ended (exit {trainer.returncode}) before "
                                 f"{count} x {text!r}:\n{log.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"no {count} x {text!r} in {WAIT_S}s:\n{log.read_text()}")


def _held(volume: Volume, log: Path, settings: dict[str, str], *, snapshot: int) -> (
        subprocess.Popen):
    """Start a trainer and hold it at the first step of its ``snapshot``-th snapshot write."""
    volume.command(f"pause {ANCHOR} {snapshot} {HOLD} 1")
    trainer = volume.start(log, settings)
    said = volume.next_line(trainer)
    assert said == f"paused {HOLD}", (said, log.read_text())
    return trainer


def _intact(run: Path) -> dict[str, str]:
    """Every snapshot the manifest lists is on the volume with the sha256 it lists; returns
    them (file -> sha256)."""
    manifest = json.loads((run / "manifest.json").read_text())
    listed = {e["file"]: e["sha256"] for e in manifest["snapshots"]}
    assert listed, manifest
    assert {name: _sha256(run / name) for name in listed} == listed
    return listed


def _one_error_line(output: str) -> str:
    """The one ``warmstart: error:`` line of a trainer's output (and no traceback)."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("warmstart: error:")]
    assert len(lines) == 1, output
    return lines[0]


def _finishes(trainer: subprocess.Popen, log: Path, run: Path) -> str:
    """The trainer ends its run normally, every snapshot intact; returns its output."""
    assert trainer.wait(timeout=WAIT_S) == 0, log.read_text()
    output = log.read_text()
    assert "Traceback" not in output, output
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    _intact(run)
    return output


def _restart_resumes(volume: Volume, log: Path, settings: dict[str, str]) -> None:
    """A new start continues the run from its params.pkl and finishes it."""
    output = _finishes(volume.start(log, settings), log, volume.backing / "job")
    assert "resuming run job at itr" in output, output
    assert f"warm start from {volume.mountpoint / 'job' / 'params.pkl'}" in output, output


def _held_then(volume: Volume, log: Path, settings: dict[str, str], *, snapshot: int,
               control: str) -> subprocess.Popen:
    """The trainer held at the first step of its ``snapshot``-th write, the volume then told
    ``control`` (a stall, a failure), and the write let go into it."""
    trainer = _held(volume, log, settings, snapshot=snapshot)
    volume.command(control)
    volume.command("go")
    return trainer


def _stop_in_stall(tmp_path: Path, *, signals: int, settings: dict[str, str]) -> None:
    """SIGTERM (``signals`` of them, apart by more than the duplicate window) while the volume
    stalls in the second snapshot write: one line, exit 11 (the process is gone once the
    volume answers the call it holds: Linux waits out a FUSE request its daemon has taken),
    the first snapshot intact, and a restart resumes from it."""
    with fuse_volume(tmp_path) as volume:
        run, seen = volume.backing / "job", volume.mountpoint / "job"
        log = tmp_path / "stopped.log"
        trainer = _held_then(volume, log, settings, snapshot=2, control="stall on")
        before = _intact(run)
        _wait_for(log, STALLED, trainer)
        for i in range(signals):
            if i:
                time.sleep(1.5)  # a second request, not the first delivered twice
            os.kill(trainer.pid, signal.SIGTERM)
        _wait_for(log, "warmstart: error: ", trainer)  # said while the volume still stalls
        volume.command("stall off")
        assert trainer.wait(timeout=WAIT_S) == 11, log.read_text()
        line = _one_error_line(log.read_text())
        assert "stalled" in line and str(seen / "manifest.json") in line, line
        assert "the last complete snapshot on the volume stands" in line, line
        assert _intact(run) == before
        _restart_resumes(volume, tmp_path / "restart.log", settings)


@pytest.mark.drill  # a stall long enough for two lines: about 10 s
def test_a_stall_is_said_while_it_lasts_and_the_run_then_finishes(tmp_path: Path) -> None:
    with fuse_volume(tmp_path) as volume:
        run = volume.backing / "job"
        log = tmp_path / "trainer.log"
        trainer = _held_then(volume, log, SETTINGS, snapshot=1, control="stall on")
        _wait_for(log, STALLED, trainer, count=2)  # said again while it lasts
        volume.command("stall off")
        output = _finishes(trainer, log, run)
        stalled = [line for line in output.splitlines() if STALLED in line]
        assert all(str(volume.mountpoint / "job") in line for line in stalled), stalled
        assert "checkpoint volume answered: " in output, output


@pytest.mark.drill  # a stall, a signal and a restart: about 12 s
def test_sigterm_during_a_stall_exits_11_and_a_restart_resumes(tmp_path: Path) -> None:
    _stop_in_stall(tmp_path, signals=1, settings=SETTINGS)


@pytest.mark.drill  # a longer stall before the signals, and a restart: about 26 s
def test_sigterm_twice_during_a_stall_still_exits_11(tmp_path: Path) -> None:
    # the second signal well within the first one's bound: it ends the process itself
    _stop_in_stall(tmp_path, signals=2, settings=SETTINGS | {"VOLUME_STALL_WARN": "5"})


def test_a_stall_before_the_start_checks_is_said_and_a_sigterm_ends_it(tmp_path: Path) -> None:
    """The volume stops answering before the trainer first looks at it: the stall is said
    (the check of CKPT_DIR), and SIGTERM ends the command with nothing written (143)."""
    with fuse_volume(tmp_path) as volume:
        log = tmp_path / "trainer.log"
        volume.command("stall on")
        trainer = volume.start(log, SETTINGS)
        _wait_for(log, f"{STALLED}check {volume.mountpoint} has not returned", trainer)
        os.kill(trainer.pid, signal.SIGTERM)
        _wait_for(log, "warmstart: stopped by SIGTERM", trainer)  # said while it still stalls
        volume.command("stall off")  # the process is gone once the call it holds returns
        assert trainer.wait(timeout=WAIT_S) == 143, log.read_text()
        assert "Traceback" not in log.read_text()
        assert os.listdir(volume.backing) == []


@pytest.mark.drill  # a stall in the start, a signal and a restart: about 9 s
def test_a_stall_in_the_start_is_said_and_a_sigterm_exits_11(tmp_path: Path) -> None:
    """The volume stops answering once the run folder is made (the probe, the lease and the
    lock next): said with the file it holds, SIGTERM exits 11 within VOLUME_STALL_WARN, and a
    restart runs the run to its end."""
    with fuse_volume(tmp_path) as volume:
        log = tmp_path / "trainer.log"
        volume.command("pause - 0 mkdir job 1")
        trainer = volume.start(log, SETTINGS)
        assert volume.next_line(trainer) == "paused mkdir job", log.read_text()
        volume.command("stall on")
        volume.command("go")
        _wait_for(log, STALLED, trainer)
        os.kill(trainer.pid, signal.SIGTERM)
        _wait_for(log, "warmstart: error: ", trainer)
        volume.command("stall off")
        assert trainer.wait(timeout=WAIT_S) == 11, log.read_text()
        output = log.read_text()
        stalled = [line for line in output.splitlines() if STALLED in line]
        assert stalled and all(f"{volume.mountpoint}/" in line for line in stalled), stalled
        assert "stalled" in _one_error_line(output)
        _finishes(volume.start(tmp_path / "restart.log", SETTINGS), tmp_path / "restart.log",
                  volume.backing / "job")


def test_transient_errors_mid_run_are_retried_and_the_run_finishes(tmp_path: Path) -> None:
    with fuse_volume(tmp_path) as volume:
        run = volume.backing / "job"
        log = tmp_path / "trainer.log"
        trainer = _held_then(volume, log, SETTINGS, snapshot=1,
                             control="fail EIO 3 manifest.json")
        output = _finishes(trainer, log, run)
        retries = [line for line in output.splitlines() if "checkpoint volume error: " in line]
        assert retries and all("Input/output error" in line and "retry" in line
                               for line in retries), output


def _fails(volume: Volume, log: Path, settings: dict[str, str], failure: str, *,
           code: int) -> str:
    """Hold the trainer's second snapshot write, make the volume fail as the ``failure``
    control line says, let the write go: the trainer exits ``code`` with the snapshot before it
    intact. Returns what it printed."""
    run = volume.backing / "job"
    trainer = _held_then(volume, log, settings, snapshot=2, control=failure)
    before = _intact(run)
    assert trainer.wait(timeout=WAIT_S) == code, log.read_text()
    assert _intact(run) == before
    return log.read_text()


def test_a_full_volume_mid_run_is_not_retried(tmp_path: Path) -> None:
    """ENOSPC is no outage: exit 4 at once, no retry, the previous snapshot intact."""
    with fuse_volume(tmp_path) as volume:
        output = _fails(volume, tmp_path / "trainer.log", SETTINGS, "fail ENOSPC 1 manifest.json",
                        code=4)
        assert "no space left" in _one_error_line(output), output
        assert "checkpoint volume error: " not in output, output


@pytest.mark.drill  # the retries span half the shortest lease: about 15 s
def test_a_volume_failing_past_the_retries_exits_10_and_a_restart_resumes(
        tmp_path: Path) -> None:
    settings = SETTINGS | {"LOCK_WAIT": "0"}  # the shortest lease: 30 s
    with fuse_volume(tmp_path) as volume:
        output = _fails(volume, tmp_path / "failed.log", settings, "fail EIO 1000000", code=10)
        line = _one_error_line(output)
        assert "checkpoint volume failed mid-run" in line, line
        assert "a restart resumes from the last snapshot" in line, line
        assert "checkpoint volume error: " in output, output  # it retried first
        volume.command("fail EIO 0")
        _restart_resumes(volume, tmp_path / "restart.log", settings)


def test_an_outage_reading_the_newest_snapshot_is_exit_10_not_an_older_start(
        tmp_path: Path, rlpyt_snapshot: Path) -> None:
    """EIO opening the newest snapshot says nothing about the file: taken as damage, the start
    would skip it and warm-start from the older copy. It stops instead, exit 10 (the Jobs
    retry), writing nothing; `inspect` says the same."""
    with fuse_volume(tmp_path) as volume:
        for name, age in (("older", 3600), ("newer", 0)):
            shutil.copytree(rlpyt_snapshot.parent, volume.backing / name)
            when = time.time() - age
            os.utime(volume.backing / name / "params.pkl", (when, when))
        before = sorted(volume.backing.rglob("*"))
        volume.command("fail-open EIO 1000000 newer/params.pkl")
        assert volume.next_line() == "armed"
        log = tmp_path / "trainer.log"
        trainer = volume.start(log, FILES_ONLY_RUN | {"STEPS": "100"})
        assert trainer.wait(timeout=WAIT_S) == 10, log.read_text()
        line = _one_error_line(log.read_text())
        newest = volume.mountpoint / "newer" / "params.pkl"
        assert f"{newest}: the checkpoint volume failed reading it (Input/output " in line
        assert "skipping" not in log.read_text()
        assert sorted(volume.backing.rglob("*")) == before
        shown = warmstart("inspect", str(newest))
        assert shown.returncode == 10, shown.stdout + shown.stderr
        assert shown.stderr.count("\n") == 1 and "Input/output error" in shown.stderr


def test_an_outage_reading_a_snapshots_counters_is_exit_10_not_a_crash(
        tmp_path: Path, rlpyt_snapshot: Path) -> None:
    """Ranking snapshots reads each one's pickle, then its few one-number tensors (Adam's
    step) from the middle of the file, with read calls (a failed page of a memory map would
    be SIGBUS, a death without a word). An outage's error there is exit 10 in one line, not
    a damaged snapshot passed over."""
    with zipfile.ZipFile(rlpyt_snapshot) as archive:
        step = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size == 4)
    with fuse_volume(tmp_path) as volume:
        shutil.copytree(rlpyt_snapshot.parent, volume.backing / "run")
        volume.command(f"fail-read EIO 1000000 run/params.pkl {step.header_offset} "
                       f"{step.header_offset + 4096}")
        assert volume.next_line() == "armed"
        shown = warmstart("inspect", str(volume.mountpoint))
        assert shown.returncode == 10, (shown.returncode, shown.stdout + shown.stderr)
        assert shown.stderr.count("\n") == 1, shown.stderr
        assert f"{volume.mountpoint / 'run' / 'params.pkl'}: the checkpoint volume failed " \
               "reading it (Input/output error)" in shown.stderr, shown.stderr


@pytest.mark.parametrize(("failure", "where", "instead"), [
    ("fail-open EIO 1000000 job/manifest.json", "job/manifest.json", "damaged run record"),
    ("fail-open EIO 1000000 job/progress.csv", "job/progress.csv", "not a progress.csv"),
    ("fail EIO 1000000 rename .warmstart-probe", ".warmstart-probe-", "write mode object"),
], ids=["manifest", "progress", "probe-rename"])
def test_an_outage_as_a_run_resumes_is_exit_10_not_damage_nor_a_lacking_volume(
        failure: str, where: str, instead: str, tmp_path: Path) -> None:
    """An outage's error reading the run's records would make them damaged (exit 7, which
    the Jobs never retry); failing the probe's rename would make the volume one without
    rename (object mode, for the rest of the run). It stops instead: exit 10 in one line
    naming the file, the volume as it was."""
    with fuse_volume(tmp_path) as volume:
        run = volume.backing / "job"
        _finishes(volume.start(tmp_path / "first.log", SETTINGS | {"STEPS": "200"}),
                  tmp_path / "first.log", run)
        before = {p: p.read_bytes() for p in sorted(volume.backing.rglob("*")) if p.is_file()}
        volume.command(failure)
        if not failure.startswith("fail-open"):  # a `fail` is not answered: this one is,
            volume.command("fail-open EIO 0")    # after the line before it took effect
        assert volume.next_line() == "armed"
        log = tmp_path / "trainer.log"
        trainer = volume.start(log, SETTINGS)
        assert trainer.wait(timeout=WAIT_S) == 10, log.read_text()
        line = _one_error_line(log.read_text())
        assert f"{volume.mountpoint}/{where}" in line, line
        assert "the checkpoint volume failed " in line and "(Input/output error)" in line, line
        assert instead not in log.read_text()
        after = {p: p.read_bytes() for p in sorted(volume.backing.rglob("*")) if p.is_file()}
        assert after == before

