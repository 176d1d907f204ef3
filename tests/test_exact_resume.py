"""Reproducibility and exact resume, as a user checks them: real trainer processes on real games,
real signals, and the tensors in the params.pkl files they leave.

- Two runs from the rlpyt fixture with one SEED write identical tensors (CPU).
- With RESUME_STATE=full, a run of breakout stopped by SIGTERM and killed by SIGKILL (after a
  periodic snapshot, and between the resume state and params.pkl) and restarted each time ends
  with exactly the tensors of a run that was never interrupted, for plain and prioritized
  replay; life losses and episode ends happen after the first interruption (checked, not
  assumed). A params.pkl that does not belong with the resume state beside it is refused.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHORT_RUN, clean_env, warmstart
from fuse_volume import fuse_volume
from warmstart.checkpoint.manifest import read_manifest
from warmstart.checkpoint.resume_state import ResumeState

# runs interrupted and restarted several times each: drills (`make drills`)
pytestmark = pytest.mark.drill

# 160 iterations of breakout: updates from itr 50 (1 per itr, batch 8), target copies every 20
# updates, epsilon falling to 0.35 so the network picks actions, and a replay of 500 that wraps.
EXACT = SHORT_RUN | {
    "GAME": "breakout", "STEPS": "640", "MIN_STEPS_LEARN": "200", "REPLAY_SIZE": "500",
    "LOG_EVERY": "80", "BATCH_SIZE": "8", "REPLAY_RATIO": "2", "TARGET_UPDATE_INTERVAL": "20",
    "EPS_STEPS": "800", "EPS_FINAL": "0.1", "TORCH_THREADS": "1", "SEED": "1",
    "RESUME_STATE": "full", "RUN_NAME": "job",
}
TARGET_ITR = 159


def _params(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _assert_same_tensors(ours: object, theirs: object, where: str = "params") -> None:
    """Equal structure, and every tensor equal bit for bit (torch.equal)."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor) and ours.dtype == theirs.dtype, where
        assert torch.equal(ours, theirs), f"{where} differs"
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), where
        for key in theirs:
            _assert_same_tensors(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _assert_same_tensors(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "progress.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _snapshots(run: Path) -> list[dict]:
    """What the run's manifest lists (its newest version on an object store), as it is now."""
    manifest = read_manifest(run) if run.is_dir() else None
    return [] if manifest is None else manifest["snapshots"]


def _start(ckpt: Path, settings: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "warmstart", "train"],
                            env=clean_env(CKPT_DIR=str(ckpt), **settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc: subprocess.Popen, ready, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"exited before {what}:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.001)


def _interrupt(ckpt: Path, settings: dict[str, str], how: str, past_itr: int) -> str:
    """Start (or resume) the run and interrupt it once its snapshots pass ``past_itr``.

    ``sigterm`` / ``sigkill``: after a periodic snapshot beyond ``past_itr``; ``sigkill-write``:
    once that is there, at the next snapshot write, while params.pkl's temp file exists (its
    resume state is then already in place).
    """
    run = ckpt / "job"
    proc = _start(ckpt, settings)
    _wait(proc, lambda: any(e["itr"] > past_itr for e in _snapshots(run)), "periodic snapshot")
    if how == "sigkill-write":
        _wait(proc, lambda: any(p.name.startswith(".params.pkl.tmp-") for p in run.iterdir()),
              "params.pkl write")
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.kill()
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == (143 if how == "sigterm" else -signal.SIGKILL), output
    if how == "sigkill-write":  # the kill fell between the new resume state and params.pkl
        newest = max(int(p.stem.removeprefix("resume-itr_")) for p in run.glob("resume-itr_*"))
        assert newest > _params(run / "params.pkl")["itr"]
    return output


def _finish(ckpt: Path, settings: dict[str, str]) -> str:
    done = warmstart(CKPT_DIR=str(ckpt), **settings)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _resumed_from(output: str) -> int:
    """The snapshot itr a restarted process continued from, as its log says."""
    line = next(x for x in output.splitlines() if "resuming run job at itr" in x)
    return int(line.split("at itr ")[1].split()[0]) - 1


def _check_life_loss_and_episode_end_after(ckpt: Path, ref: Path, first_resume: int) -> None:
    """The resumed part of the run crossed at least one lost life and one finished game."""
    rows = _rows(ckpt / "job")
    at_resume = next(r for r in rows if int(r["Diagnostics/Iteration"]) == first_resume)
    games_after = (int(rows[-1]["Diagnostics/CumCompletedTrajs"])
                   - int(at_resume["Diagnostics/CumCompletedTrajs"]))
    assert rows[-1]["Diagnostics/CumCompletedTrajs"] == _rows(ref)[-1][
        "Diagnostics/CumCompletedTrajs"], "episode counters continued exactly"
    # every step's done flag is in the reference's final replay (500 slots hold steps 140-639)
    dones = ResumeState(ref / f"resume-itr_{TARGET_ITR}.npz").array("replay/dones")
    steps = np.arange((first_resume + 1) * 4, (TARGET_ITR + 1) * 4)
    lives_lost = int(dones[steps % len(dones)].sum()) - games_after  # a done is one or the other
    assert games_after >= 1 and lives_lost >= 1, (games_after, lives_lost)


def _reference_and_volume(tmp_path: Path, settings: dict[str, str]) -> tuple[Path, Path, Path]:
    """The uninterrupted run's folder, then an empty volume and the folder of the job to be
    interrupted on it."""
    reference = tmp_path / "uninterrupted"
    reference.mkdir()
    _finish(reference, settings)
    ckpt = tmp_path / "interrupted"
    ckpt.mkdir()
    return reference / "job", ckpt, ckpt / "job"


def test_plain_replay_sigterm_then_sigkill_resumes_exactly(tmp_path: Path) -> None:
    ref, ckpt, run = _reference_and_volume(tmp_path, EXACT)
    _interrupt(ckpt, EXACT, "sigterm", past_itr=60)
    stopped = _params(run / "params.pkl")["itr"]
    assert (run / f"resume-itr_{stopped}.npz").exists()

    # A params.pkl from another snapshot beside this resume state: refused, nothing changed.
    own = (run / "params.pkl").read_bytes()
    shutil.copyfile(ref / "params.pkl", run / "params.pkl")
    mixed = warmstart(CKPT_DIR=str(ckpt), **EXACT)
    assert mixed.returncode == 3, mixed.stdout + mixed.stderr
    assert len(mixed.stderr.strip().splitlines()) == 1
    assert "params.pkl" in mixed.stderr and f"resume-itr_{stopped}.npz" in mixed.stderr
    assert "mixed" in mixed.stderr
    assert (run / f"resume-itr_{stopped}.npz").exists()
    (run / "params.pkl").write_bytes(own)
    # Settings that shape training changed: an exact resume is impossible, said plainly.
    changed = warmstart(CKPT_DIR=str(ckpt), **(EXACT | {"REPLAY_SIZE": "600"}))
    assert changed.returncode == 2 and "REPLAY_SIZE=600 (the run used 500)" in changed.stderr

    output = _interrupt(ckpt, EXACT, "sigkill", past_itr=100)
    assert _resumed_from(output) == stopped and "exact resume from" in output
    final = _finish(ckpt, EXACT)
    assert "exact resume from" in final and _resumed_from(final) >= 100
    _assert_same_tensors(_params(run / "params.pkl"), _params(ref / "params.pkl"))
    _check_life_loss_and_episode_end_after(ckpt, ref, stopped)
    assert [p.name for p in run.glob("resume-itr_*")] == [f"resume-itr_{TARGET_ITR}.npz"]


def test_prioritized_3_step_replay_sigkills_then_sigterm_resume_exactly(tmp_path: Path) -> None:
    settings = EXACT | {"PRIORITIZED_REPLAY": "1", "N_STEP_RETURN": "3"}
    ref, ckpt, run = _reference_and_volume(tmp_path, settings)
    _interrupt(ckpt, settings, "sigkill", past_itr=60)
    first = _params(run / "params.pkl")["itr"]
    _interrupt(ckpt, settings, "sigkill-write", past_itr=first)
    _interrupt(ckpt, settings, "sigterm", past_itr=120)
    final = _finish(ckpt, settings)
    assert "exact resume from" in final
    _assert_same_tensors(_params(run / "params.pkl"), _params(ref / "params.pkl"))
    _check_life_loss_and_episode_end_after(ckpt, ref, first)


def test_an_object_store_run_killed_mid_resume_state_resumes_exactly(tmp_path: Path) -> None:
    """On a volume without rename (the test volume as Mountpoint for S3: object mode), a SIGKILL
    while a resume state is written, after updates began, leaves the part written published;
    the restart passes it over for the previous snapshot's own state and is exact, and so is
    the one after a SIGTERM: the run ends with the uninterrupted run's tensors."""
    ref, _, _ = _reference_and_volume(tmp_path, EXACT)
    with fuse_volume(tmp_path, object_store=()) as volume:
        run, seen = volume.backing / "job", volume.mountpoint / "job"
        # the 4th log point (itr 79) writes its resume state after the run's progress.csv
        volume.kill_at(("write", "resume-itr_N.npz", 1), anchor="progress.csv", occurrence=4,
                       settings=EXACT, log=tmp_path / "killed.log")
        torn = run / "resume-itr_79.npz"
        assert torn.exists() and not zipfile.is_zipfile(torn)
        # a refused start records its failure as the run is written: in place, no rename
        changed = warmstart(CKPT_DIR=str(volume.mountpoint), **(EXACT | {"REPLAY_SIZE": "600"}))
        assert changed.returncode == 2 and "REPLAY_SIZE=600 (the run used 500)" in changed.stderr
        assert "could not record" not in changed.stdout, changed.stdout
        assert read_manifest(seen)["status"] == "failed"
        output = _interrupt(volume.mountpoint, EXACT, "sigterm", past_itr=100)
        assert _resumed_from(output) == 59 and "exact resume from" in output, output
        final = _finish(volume.mountpoint, EXACT)
        assert "exact resume from" in final and _resumed_from(final) >= 100
        assert read_manifest(seen)["write_mode"] == "object"
        _assert_same_tensors(_params(run / "params.pkl"), _params(ref / "params.pkl"))
        assert [p.name for p in run.glob("resume-itr_*")] == [f"resume-itr_{TARGET_ITR}.npz"]


def test_two_seeded_runs_from_rlpyt_fixture_write_identical_tensors(
        tmp_path: Path, rlpyt_run_dir: Path, rlpyt_snapshot: Path) -> None:
    other = tmp_path / "again"
    shutil.copytree(rlpyt_run_dir, other)
    settings = SHORT_RUN | {"SEED": "7", "MIN_STEPS_LEARN": "360"}  # 10 updates
    _finish(rlpyt_run_dir, settings)
    _finish(other, settings | {"DETERMINISTIC": "1"})  # on the CPU the flags change no bits
    first = _params(rlpyt_run_dir / "run_0" / "params.pkl")
    second = _params(other / "run_0" / "params.pkl")
    _assert_same_tensors(second, first)
    fixture_steps = _params(rlpyt_snapshot)["optimizer_state_dict"]["state"][0]["step"]
    assert first["optimizer_state_dict"]["state"][0]["step"] == fixture_steps + 10  # trained
    manifest = json.loads((other / "run_0" / "manifest.json").read_text())
    start = manifest["starts"][0]
    assert manifest["seed"] == 7 and manifest["config"]["SEED"] == 7
    assert start["torch_threads"] >= 1 and start["deterministic_algorithms"] is True
    assert {"torch", "numpy", "ale-py", "python"} <= set(manifest["versions"])


@pytest.mark.skipif(importlib.util.find_spec("rlpyt") is None, reason="rlpyt not importable")
def test_resume_state_with_rlpyt_engine_is_refused(tmp_path: Path) -> None:
    result = warmstart(CKPT_DIR=str(tmp_path), ENGINE="rlpyt", RESUME_STATE="full")
    assert result.returncode == 2 and "RESUME_STATE=full" in result.stderr
    assert "ENGINE=native" in result.stderr and list(tmp_path.iterdir()) == []
