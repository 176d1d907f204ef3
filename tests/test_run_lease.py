"""One run, one writer, across nodes: the run's lease (checkpoint/lease.py).

Two FUSE mounts of one backing folder stand for two nodes: a ``flock`` taken through one is not
seen through the other, as on NFS or gcsfuse between machines. Real `warmstart` processes.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import FILES_ONLY_RUN, SHORT_RUN, warmstart
from fuse_volume import WAIT_S, Volume, fuse_volume
from warmstart.checkpoint import lease
from warmstart.checkpoint.manifest import load_manifest

LONG_RUN = SHORT_RUN | {"STEPS": "100000", "RUN_NAME": "job"}


def _running(volume: Volume, log: Path, **settings: str):
    """Start `warmstart train` on ``volume``; return once its run has started."""
    trainer = volume.start(log, settings)
    while "engine native" not in log.read_text():
        assert trainer.poll() is None, log.read_text()
        time.sleep(0.1)
    return trainer


def _lease(backing: Path) -> dict:
    return json.loads((backing / "job" / lease.FILE).read_text())


@pytest.mark.drill  # waits out LOCK_WAIT on a second mount: about 17 s
def test_a_trainer_on_another_node_waits_then_exits_5_naming_the_holder(tmp_path: Path) -> None:
    with fuse_volume(tmp_path, name="node-a") as a, \
            fuse_volume(tmp_path, name="node-b", backing=a.backing) as b:
        first = _running(a, tmp_path / "first.log", **LONG_RUN)
        second = warmstart(CKPT_DIR=str(b.mountpoint), LOCK_WAIT="1", **LONG_RUN)
        assert second.returncode == 5, second.stdout + second.stderr
        error = second.stderr.strip()
        assert len(error.splitlines()) == 1
        assert f"is held by holder 1 (host {os.uname().nodename}, pid {first.pid}," in error
        assert "waiting up to 1s" in second.stdout
        # the readers show the holder and never take or renew the lease
        while not (a.backing / "job" / "params.pkl").exists():  # a snapshot to inspect
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        shown = warmstart("inspect", str(b.mountpoint / "job"))
        assert shown.returncode == 0, shown.stderr
        assert f"holder 1 (host {os.uname().nodename}, pid {first.pid}," in shown.stdout
        assert ": live" in shown.stdout
        assert warmstart("report", str(b.mountpoint)).returncode == 0
        assert _lease(a.backing)["pid"] == first.pid and _lease(a.backing)["number"] == 1
        first.send_signal(signal.SIGTERM)
        assert first.wait() == 143, (tmp_path / "first.log").read_text()
        manifest = json.loads((a.backing / "job" / "manifest.json").read_text())
        assert len(manifest["starts"]) == 1 and manifest["holder"] == 1  # the second wrote nothing
        assert _lease(a.backing)["released"] is True


@pytest.mark.drill  # a held write on one mount, a slow rename on the other: about 7 s
def test_two_nodes_taking_a_free_lease_at_once_leave_one_writer(tmp_path: Path) -> None:
    """Node A has found the lease free and is about to write its own when node B finds it free
    too and writes its own; A's write lands while B waits after its write (B's volume renames
    slowly, so its write took seconds and it waits twice that). B, reading again, finds A's
    lease and waits for it: A trains, B exits 5 having written nothing."""
    with fuse_volume(tmp_path, name="node-a") as a, \
            fuse_volume(tmp_path, name="node-b", backing=a.backing, slow_rename=3.0) as b:
        a.command("pause - 0 create ..warmstart.lease.tmp- 1")
        first = a.start(tmp_path / "first.log", LONG_RUN)
        assert a.next_line(first) == "paused create ..warmstart.lease.tmp-", (
            (tmp_path / "first.log").read_text())
        second_log = tmp_path / "second.log"
        second = b.start(second_log, LONG_RUN | {"LOCK_WAIT": "2"})
        deadline = time.monotonic() + WAIT_S
        while not ((a.backing / "job" / lease.FILE).exists()
                   and _lease(a.backing)["pid"] == second.pid):
            assert second.poll() is None and time.monotonic() < deadline, second_log.read_text()
            time.sleep(0.05)
        a.command("go")  # A's lease lands now, while B waits
        assert second.wait(timeout=WAIT_S) == 5, second_log.read_text()
        assert "engine native" not in second_log.read_text()
        assert f"pid {first.pid}," in second_log.read_text()
        while "engine native" not in (tmp_path / "first.log").read_text():
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=WAIT_S) == 143, (tmp_path / "first.log").read_text()
        manifest = json.loads((a.backing / "job" / "manifest.json").read_text())
        assert len(manifest["starts"]) == 1 and _lease(a.backing)["pid"] == first.pid


def test_a_killed_holders_restart_on_the_same_host_takes_over_at_once(tmp_path: Path) -> None:
    """The holder is SIGKILLed on one node; a start on the other node of the same host and boot
    finds its pid gone and takes the run with the next holder number, waiting for nothing
    (LOCK_WAIT=0 would exit 5 on a live lease)."""
    with fuse_volume(tmp_path, name="node-a") as a, \
            fuse_volume(tmp_path, name="node-b", backing=a.backing) as b:
        first = _running(a, tmp_path / "first.log", **(SHORT_RUN | {"RUN_NAME": "job"}))
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        again = warmstart(CKPT_DIR=str(b.mountpoint), LOCK_WAIT="0",
                          **(SHORT_RUN | {"RUN_NAME": "job"}))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "resuming run job" in again.stdout and "waiting" not in again.stdout
        manifest = json.loads((a.backing / "job" / "manifest.json").read_text())
        assert manifest["holder"] == 2 and manifest["status"] == "finished"
        assert {e["holder"] for e in manifest["snapshots"]} == {2}
        assert _lease(a.backing)["number"] == 2 and _lease(a.backing)["released"] is True


@pytest.mark.drill  # three starts on a local folder: about 40 s
def test_a_late_manifest_of_an_old_holder_never_stands_as_the_runs_record(
        tmp_path: Path) -> None:
    """Holder 1's manifest.json lands after holder 2 took the run over and wrote a newer
    params.pkl (s3fs completes a rename after its caller is gone), and the lease file was
    deleted to break the lease: the next start reads holder 2's record (its versions), continues
    from its params.pkl, and takes holder number 3. Before versions were written in rename mode
    it exited 7 ("not a snapshot this run wrote"); without the records' floor it took number 1,
    and its writes lost to holder 2's."""
    run = tmp_path / "job"

    def train(steps: str) -> str:
        done = warmstart(CKPT_DIR=str(tmp_path), **(FILES_ONLY_RUN | {"RUN_NAME": "job",
                                                                      "STEPS": steps}))
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    train("400")
    late = (run / "manifest.json").read_bytes()
    train("800")
    newest = load_manifest(run)
    assert newest is not None and newest["holder"] == 2
    (run / "manifest.json").write_bytes(late)
    (run / lease.FILE).unlink()
    assert load_manifest(run) == newest
    itr = max(e["itr"] for e in newest["snapshots"])
    output = train("1200")
    assert f"warm start from {run / 'params.pkl'} (itr {itr}:" in output, output
    resumed = load_manifest(run)
    assert resumed is not None and resumed["holder"] == 3 and resumed["status"] == "finished"
    assert json.loads((run / "manifest.json").read_text()) == resumed


@pytest.mark.drill  # a stall past half the shortest lease: about 22 s
def test_a_holder_that_stalled_past_half_its_lease_stops_itself(tmp_path: Path) -> None:
    """A stopped process (a stall, a paused VM) may have lost the run to another node: when it
    runs again it writes nothing more and exits 5 in one line. LOCK_WAIT=60: a 30 s lease."""
    with fuse_volume(tmp_path, name="node-a") as a:
        log = tmp_path / "first.log"
        first = _running(a, log, LOCK_WAIT="60", **LONG_RUN)
        os.killpg(first.pid, signal.SIGSTOP)
        time.sleep(lease.MIN_LEASE_S / 2 + 2)  # the stall: longer than half the lease
        os.killpg(first.pid, signal.SIGCONT)
        assert first.wait() == 5, log.read_text()
        output = log.read_text()
        assert "stopped writing the run: its lease was not renewed for" in output
        assert "Traceback" not in output and "could not record" not in output


def test_a_damaged_lease_file_stops_a_trainer_with_7_and_says_how_to_break_it(
        tmp_path: Path) -> None:
    settings = SHORT_RUN | {"RUN_NAME": "job", "STEPS": "200", "MIN_STEPS_LEARN": "100000"}
    assert warmstart(CKPT_DIR=str(tmp_path), **settings).returncode == 0
    lease_file = tmp_path / "job" / lease.FILE
    lease_file.write_bytes(b'{"number": "three"}')
    before = {p.name: p.read_bytes() for p in (tmp_path / "job").iterdir()}
    again = warmstart(CKPT_DIR=str(tmp_path), **(settings | {"STEPS": "400"}))
    assert again.returncode == 7, again.stdout + again.stderr
    error = again.stderr.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in again.stdout + again.stderr
    assert f"{lease_file}: not a lease file" in error and "delete it" in error
    shown = warmstart("inspect", str(tmp_path / "job"))
    assert shown.returncode == 0 and "not a lease file" in shown.stdout
    assert {p.name: p.read_bytes() for p in (tmp_path / "job").iterdir()} == before
