"""Training that goes non-finite stops (exit 8) before writing it, and a snapshot of NaN is never
a start point: one diverged job must not poison every later warm start on the volume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FILES_ONLY_RUN, SHORT_RUN, warmstart
from warmstart import config
from warmstart.checkpoint import atomic, discovery
from warmstart.checkpoint import snapshot as snap
from warmstart.checkpoint.counters import Budget
from warmstart.checkpoint.run import RunDir
from warmstart.errors import TrainingDivergedError


def _poisoned(s: snap.Snapshot, *, nan_in: str = "model") -> dict[str, object]:
    """``s``'s parts with one weight of ``nan_in`` (model, target or optimizer) set to NaN."""
    model = {k: v.clone() for k, v in s.model.items()}
    target = {k: v.clone() for k, v in s.target.items()}
    optimizer = json.loads(json.dumps({"param_groups": s.optimizer["param_groups"]}))
    optimizer["state"] = {k: {n: t.clone() if isinstance(t, torch.Tensor) else t
                              for n, t in v.items()} for k, v in s.optimizer["state"].items()}
    if nan_in == "optimizer":
        first = next(iter(optimizer["state"].values()))
        first["exp_avg"].view(-1)[0] = float("nan")
    else:
        {"model": model, "target": target}[nan_in]["head.model.2.bias"][0] = float("inf")
    return {"model": model, "target": target, "optimizer": optimizer}


def _write(path: Path, parts: dict[str, object], itr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, snap.to_bytes(itr=itr, cum_steps=itr * 4, **parts))
    return path


@pytest.mark.parametrize("nan_in", ["model", "target", "optimizer"])
def test_non_finite_snapshot_is_refused_by_name(rlpyt_snapshot: Path, tmp_path: Path,
                                               nan_in: str) -> None:
    s = snap.read(rlpyt_snapshot)
    path = _write(tmp_path / "params.pkl", _poisoned(s, nan_in=nan_in), 10)
    with pytest.raises(snap.NonFiniteSnapshotError, match="NaN or infinite") as caught:
        snap.read(path)
    assert str(caught.value).startswith(f"{path}: {nan_in}.") and "\n" not in str(caught.value)


def test_discovery_skips_the_non_finite_snapshot_with_most_training(rlpyt_snapshot: Path,
                                                                   tmp_path: Path) -> None:
    s = snap.read(rlpyt_snapshot)
    good = _write(tmp_path / "run_0" / "params.pkl",
                  {"model": s.model, "target": s.target, "optimizer": s.optimizer}, 100)
    bad = _write(tmp_path / "run_1" / "params.pkl", _poisoned(s), 5000)  # more cum_steps
    logged: list[str] = []
    found = discovery.newest(discovery.candidates(tmp_path), strict=False, log=logged.append)
    assert found is not None and found.path == good
    assert any(str(bad) in line and "NaN or infinite" in line for line in logged), logged
    with pytest.raises(snap.NonFiniteSnapshotError):
        discovery.newest(discovery.candidates(tmp_path), strict=True, log=logged.append)


def test_init_snapshot_of_nan_exits_3_before_making_a_run(rlpyt_snapshot: Path,
                                                        tmp_path: Path) -> None:
    bad = _write(tmp_path / "elsewhere" / "params.pkl", _poisoned(snap.read(rlpyt_snapshot)), 10)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    done = warmstart("train", CKPT_DIR=str(ckpt), INIT_SNAPSHOT=str(bad), **FILES_ONLY_RUN)
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and "NaN or infinite" in done.stderr
    assert "Traceback" not in done.stderr and list(ckpt.iterdir()) == []


def test_snapshot_of_nan_weights_is_never_written(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    s = snap.read(rlpyt_snapshot)
    cfg = config.load({"CKPT_DIR": str(tmp_path)})
    run = RunDir.create(tmp_path / "run_0", cfg, engine="native", n_actions=6, parent=None,
                        budget=Budget(0, 9, 0), log=lambda _: None)
    with pytest.raises(TrainingDivergedError, match="head.model.2.bias"):
        run.save_snapshot(5, lambda: _poisoned(s, nan_in="model"))
    assert not (tmp_path / "run_0" / "params.pkl").exists()
    assert not list((tmp_path / "run_0").glob(".*tmp*"))


def test_diverging_run_exits_8_and_keeps_only_finite_snapshots(rlpyt_snapshot: Path,
                                                             tmp_path: Path) -> None:
    """A start point whose first layer is finite but near float32's limit (1e37) overflows in
    the forward pass once updates start, so the first loss is NaN: the run stops at the next
    log point, records why, and its snapshots (written before updates started) stay finite."""
    s = snap.read(rlpyt_snapshot)
    parts = _poisoned(s)
    for net in ("model", "target"):
        parts[net]["head.model.2.bias"] = s.model["head.model.2.bias"].clone()
        parts[net]["conv.conv.0.weight"] = torch.full_like(s.model["conv.conv.0.weight"], 1e37)
    start = _write(tmp_path / "elsewhere" / "params.pkl", parts, 10)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    done = warmstart("train", CKPT_DIR=str(ckpt), INIT_SNAPSHOT=str(start), **SHORT_RUN)
    assert done.returncode == 8, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "training diverged" in done.stderr
    assert "Traceback" not in done.stderr
    manifest = json.loads((ckpt / "run_0" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"].startswith("exit 8: training")
    # MIN_STEPS_LEARN fresh steps from the run's first iteration before updates start
    first_update_itr = manifest["budget"]["start_itr"] + int(SHORT_RUN["MIN_STEPS_LEARN"]) // 4
    written = list(discovery.candidates(ckpt))
    assert written
    for path in written:
        assert snap.read(path).itr < first_update_itr  # read checks finiteness
    tmp_path = ckpt
    report = warmstart("report", str(tmp_path))
    assert report.returncode == 0 and "failed" in report.stdout
    assert "run_0 failed: exit 8: training diverged" in report.stdout
