"""Reading, checking, finding and writing rlpyt snapshots, on the real rlpyt fixture."""

from __future__ import annotations

import itertools
import os
import pickle
from pathlib import Path

import pytest
import torch
from warmstart.checkpoint import atomic, discovery, volume_errors
from warmstart.checkpoint import snapshot as snap
from warmstart.errors import SnapshotError, VolumeError


def _copy(src: Path, dst: Path, cut: int | None = None) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    dst.write_bytes(data if cut is None else data[:cut])
    return dst


def test_reads_rlpyt_fixture(rlpyt_snapshot: Path) -> None:
    s = snap.read(rlpyt_snapshot)
    assert (s.itr, s.cum_steps) == (2499, 9996)
    assert s.shape == snap.ModelShape(n_actions=6, dueling=False)
    assert s.parameter_count == 3_620_518
    assert s.lr == pytest.approx(2.5e-4)
    counters = snap.read_training(rlpyt_snapshot)
    assert (counters.itr, counters.cum_steps) == (2499, 9996)


def test_accepts_bare_model_state_dict(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    params = torch.load(rlpyt_snapshot, weights_only=True)
    params["agent_state_dict"] = params["agent_state_dict"]["model"]
    path = tmp_path / "params.pkl"
    torch.save(params, path)
    s = snap.read(path)
    assert s.shape.n_actions == 6
    assert all(torch.equal(s.model[k], s.target[k]) for k in s.model)


def test_round_trip_keeps_rlpyt_structure(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    original = torch.load(rlpyt_snapshot, weights_only=True)
    s = snap.read(rlpyt_snapshot)
    path = tmp_path / "params.pkl"
    atomic.write_bytes(path, snap.to_bytes(itr=s.itr, cum_steps=s.cum_steps, model=s.model,
                                           target=s.target, optimizer=s.optimizer))
    written = torch.load(path, weights_only=True)
    assert list(written) == list(original)
    assert type(written["itr"]) is int and type(written["cum_steps"]) is int
    for part in ("model", "target"):
        assert list(written["agent_state_dict"][part]) == list(
            original["agent_state_dict"][part])
    assert written["optimizer_state_dict"]["param_groups"] == original[
        "optimizer_state_dict"]["param_groups"]
    assert [p.name for p in tmp_path.iterdir()] == ["params.pkl"]  # no temp file left


def test_truncated_snapshot_is_a_clear_error(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    path = _copy(rlpyt_snapshot, tmp_path / "params.pkl", cut=1_000_000)
    with pytest.raises(snap.NotASnapshotError, match=r"params\.pkl: not a snapshot file: a zip "
                                                  "archive that is cut short"):
        snap.read(path)
    with pytest.raises(SnapshotError):
        snap.read_training(path)


class _Payload:
    def __reduce__(self):  # what a malicious pickle does: run a call on load
        return (os.system, ("echo pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "params.pkl"
    torch.save({"itr": 1, "cum_steps": 4, "agent_state_dict": {}, "x": _Payload()}, path)
    with pytest.raises(snap.UnsafeSnapshotError, match="would run code on load"):
        snap.read(path)
    plain = tmp_path / "plain" / "params.pkl"
    plain.parent.mkdir()
    plain.write_bytes(pickle.dumps({"x": _Payload()}))  # an old-style raw pickle
    with pytest.raises(SnapshotError):
        snap.read(plain)


def test_other_game_and_other_head_are_refused_plainly(rlpyt_snapshot: Path) -> None:
    s = snap.read(rlpyt_snapshot)
    with pytest.raises(SnapshotError, match="6 actions but GAME=breakout has 4"):
        snap.check_fits(s, game="breakout", n_actions=4, dueling=False)
    with pytest.raises(SnapshotError, match="plain head but DUELING=1; set DUELING=0"):
        snap.check_fits(s, game="pong", n_actions=6, dueling=True)


def test_not_a_dqn_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "params.pkl"
    torch.save({"itr": 0, "cum_steps": 0,
                "agent_state_dict": {"model": {"pi.weight": torch.zeros(2)}}}, path)
    with pytest.raises(SnapshotError, match="not an rlpyt AtariDqnModel"):
        snap.read(path)


def _write(path: Path, s: snap.Snapshot, itr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, snap.to_bytes(itr=itr, cum_steps=itr * 4, model=s.model,
                                           target=s.target, optimizer=s.optimizer))
    return path


def test_discovery_picks_most_training_and_skips_broken(rlpyt_snapshot: Path,
                                                         tmp_path: Path) -> None:
    s = snap.read(rlpyt_snapshot)
    _write(tmp_path / "local" / "20240101" / "dqn_pong" / "run_0" / "params.pkl", s, 100)
    _write(tmp_path / "run_3" / "itr_499.pkl", s, 499)
    _write(tmp_path / "run_3" / "itr_999.pkl", s, 999)
    _write(tmp_path / "run_3" / ".params.pkl.tmp-123", s, 5000)  # a killed writer's temp file
    (tmp_path / "run_3" / "itr_1999.pkl").write_bytes(b"PK\x03\x04 cut short")
    logged: list[str] = []
    found = discovery.newest(discovery.candidates(tmp_path), strict=False, log=logged.append)
    assert found is not None and found.itr == 999
    assert len(logged) == 2 and "itr_1999.pkl" in logged[0]
    assert logged[1].startswith(f"newest of 3 snapshots: {tmp_path / 'run_3' / 'itr_999.pkl'}")
    with pytest.raises(SnapshotError, match="itr_1999.pkl"):
        discovery.newest(discovery.candidates(tmp_path), strict=True, log=logged.append)


def test_discovery_refuses_when_every_snapshot_is_broken(tmp_path: Path) -> None:
    (tmp_path / "params.pkl").write_bytes(b"not a snapshot")
    with pytest.raises(SnapshotError, match="params.pkl"):
        discovery.newest(discovery.candidates(tmp_path), strict=False, log=lambda _: None)
    assert discovery.newest(discovery.candidates(tmp_path / "empty"), strict=False,
                            log=lambda _: None) is None


def test_failed_atomic_write_keeps_old_file_and_leaves_no_temp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "params.pkl"
    target.write_bytes(b"old")
    (tmp_path / "params.pkl").chmod(0o644)
    monkeypatch.setattr(atomic, "_serial", itertools.count())
    blocker = tmp_path / f".params.pkl{atomic.TEMP_MARKER}{os.getpid()}-0"
    blocker.mkdir()  # the temp path is taken by a folder: the write must fail cleanly
    with pytest.raises(VolumeError, match="params.pkl: write failed"):
        atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"old"


def test_a_retried_write_takes_a_temp_name_of_its_own(tmp_path: Path) -> None:
    """s3fs, after an outage, still showed a failed write's temp file as present after its
    unlink, and the retry's O_EXCL create got EEXIST: no try may reuse an earlier one's name."""
    target = tmp_path / "progress.csv"
    seen = []
    for _ in range(2):
        with (pytest.raises(VolumeError, match="progress.csv: the checkpoint volume failed"),
              atomic.replacing(target)):
            seen += [p.name for p in tmp_path.iterdir()]
            raise OSError(5, "Input/output error")
    assert len(set(seen)) == 2 and all(atomic.TEMP_MARKER in name for name in seen)
    atomic.write_bytes(target, b"row\n")
    assert [p.name for p in tmp_path.iterdir()] == ["progress.csv"]


@pytest.mark.parametrize(("name", "says"), [
    ("params.pkl", "the previous snapshot is intact"),
    ("curve.png", "an earlier curve.png is intact"),
    ("game.mp4", "an earlier game.mp4 is intact"),
])
def test_full_disk_line_names_what_was_kept(tmp_path: Path, name: str, says: str) -> None:
    import errno

    err = volume_errors.volume_error(tmp_path / name,
                                     OSError(errno.ENOSPC, "No space left on device"))
    assert says in str(err) and (name.endswith(".pkl") or "snapshot" not in str(err))
