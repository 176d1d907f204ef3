"""The resume-state file beside a snapshot: found by the sha256 it records, refused when mixed.

Real files in a real run folder: snapshots written by ``snapshot.to_bytes`` from a real model,
resume states written by ``resume_state.write``. The end-to-end exactness is tested in
test_exact_resume.py; these pin down the file rules cheaply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from warmstart import config
from warmstart.checkpoint import resume_state as rs
from warmstart.checkpoint import snapshot as snap
from warmstart.engine.agents.model import AtariDqnModel
from warmstart.errors import ConfigError, SnapshotError

FULL = config.load({"RESUME_STATE": "full", "REPLAY_SIZE": "500"})


def _snapshot(run: Path, itr: int, seed: int) -> snap.Snapshot:
    torch.manual_seed(seed)
    model = AtariDqnModel(4).state_dict()
    optimizer = torch.optim.Adam(AtariDqnModel(4).parameters()).state_dict()
    path = run / "params.pkl"
    path.write_bytes(snap.to_bytes(itr=itr, cum_steps=itr * 4, model=model, target=model,
                                   optimizer=optimizer))
    return snap.read(path)


def _payload(itr: int) -> rs.ResumePayload:
    frames = np.arange(itr * 3 * 104 * 80, dtype=np.int64).astype(np.uint8).reshape(-1, 104, 80)
    return rs.ResumePayload({"min_itr_learn": 50, "itr_seen": itr},
                            {"replay/frames": frames, "replay/dones": np.eye(itr, dtype=bool)[0]})


def _write(run: Path, snapshot: snap.Snapshot, cfg: config.Config = FULL) -> Path:
    return rs.write(run, itr=snapshot.itr, cum_steps=snapshot.cum_steps,
                    params_sha256=snapshot.sha256, config=cfg,
                    payload=_payload(snapshot.itr))


def test_the_snapshots_own_state_is_found_and_reads_back_exactly(tmp_path: Path) -> None:
    first = _snapshot(tmp_path, 10, seed=0)
    mine = _write(tmp_path, first)
    # a kill after the next resume state landed but before its params.pkl: a stray, ignored
    _write(tmp_path, snap.read(_snapshot(tmp_path, 20, seed=1).path))
    (tmp_path / "params.pkl").unlink()
    again = _snapshot(tmp_path, 10, seed=0)  # the same bytes as the first params.pkl
    assert again.sha256 == first.sha256
    found = rs.find(tmp_path, again, FULL, log=print)
    assert found is not None and found.path == mine and found.min_itr_learn == 50
    assert found.meta["settings"]["REPLAY_SIZE"] == 500 and found.state["itr_seen"] == 10
    expected = _payload(10)
    out = np.zeros_like(expected.arrays["replay/frames"])
    found.read_into("replay/frames", out)
    assert np.array_equal(out, expected.arrays["replay/frames"])
    assert np.array_equal(found.array("replay/dones"), expected.arrays["replay/dones"])
    with np.load(mine, allow_pickle=False) as plain:  # plain numpy reads it, without pickles
        assert np.array_equal(plain["replay/frames"], expected.arrays["replay/frames"])
    with pytest.raises(SnapshotError, match="expected uint8"):
        found.read_into("replay/frames", np.zeros((1, 104, 80), np.uint8))
    rs.prune(tmp_path, keep=mine)
    assert sorted(p.name for p in tmp_path.glob("resume-*")) == [mine.name]


def test_a_snapshot_beside_other_snapshots_states_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, _snapshot(tmp_path, 10, seed=0))
    foreign = _snapshot(tmp_path, 30, seed=2)
    with pytest.raises(SnapshotError) as err:
        rs.find(tmp_path, foreign, FULL, log=print)
    message = str(err.value)
    assert "params.pkl" in message and "resume-itr_10.npz" in message and "mixed" in message


def test_changed_settings_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    snapshot = _snapshot(tmp_path, 10, seed=0)
    path = _write(tmp_path, snapshot)
    bigger = config.load({"RESUME_STATE": "full", "REPLAY_SIZE": "600", "SEED": "3"})
    with pytest.raises(ConfigError, match=r"SEED=3 \(the run used 0\), REPLAY_SIZE=600 \(the run used 500\)"):
        rs.find(tmp_path, snapshot, bigger, log=print)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SnapshotError, match="unreadable resume state"):
        rs.find(tmp_path, snapshot, FULL, log=print)


def test_without_full_resume_states_are_ignored_and_said(tmp_path: Path) -> None:
    snapshot = _snapshot(tmp_path, 10, seed=0)
    _write(tmp_path, snapshot)
    said: list[str] = []
    assert rs.find(tmp_path, snapshot, config.load({}), log=said.append) is None
    assert "RESUME_STATE=off: ignoring resume-itr_10.npz" in said[0]
    rs.prune(tmp_path, keep=None)
    assert rs.find(tmp_path, snapshot, FULL, log=said.append) is None
    assert "replay restarts empty" in said[1]
