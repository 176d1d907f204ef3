"""ENGINE=rlpyt: rlpyt's own DQN warm-started through our entrypoint, and its absence."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from conftest import SHORT_RUN, warmstart

HAVE_RLPYT = importlib.util.find_spec("rlpyt") is not None
needs_rlpyt = pytest.mark.skipif(not HAVE_RLPYT, reason="rlpyt is not importable here")


def _train(ckpt: Path, engine: str, **extra: str):
    result = warmstart(CKPT_DIR=str(ckpt), **(SHORT_RUN | {"ENGINE": engine} | extra))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _last_progress(run: Path) -> dict[str, str]:
    lines = (run / "progress.csv").read_text().splitlines()
    return dict(zip(lines[0].split(","), lines[-1].split(","), strict=True))


@needs_rlpyt
def test_rlpyt_engine_warm_starts_from_rlpyt_fixture(rlpyt_run_dir: Path) -> None:
    result = _train(rlpyt_run_dir, "rlpyt", LR="1e-4")
    assert "engine rlpyt" in result.stdout and "learning rate 0.0001 (from LR)" in result.stdout
    run = rlpyt_run_dir / "run_0"
    written = torch.load(run / "params.pkl", weights_only=True)
    assert (written["itr"], written["cum_steps"]) == (2599, 9996 + 400)
    assert written["optimizer_state_dict"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert written["optimizer_state_dict"]["state"][0]["step"] == 2250 + 25
    assert 0.9 < float(_last_progress(run)["Epsilon"]) < 1.0  # continued, not restarted at 1.0
    assert json.loads((run / "manifest.json").read_text())["engine"] == "rlpyt"


@needs_rlpyt
def test_each_engine_warm_starts_from_the_other(tmp_path: Path) -> None:
    _train(tmp_path, "native")
    second = _train(tmp_path, "rlpyt")
    assert f"warm start from {tmp_path / 'run_0' / 'params.pkl'}" in second.stdout
    third = _train(tmp_path, "native")
    assert f"warm start from {tmp_path / 'run_1' / 'params.pkl'}" in third.stdout
    assert torch.load(tmp_path / "run_2" / "params.pkl", weights_only=True)["cum_steps"] == 1196


@pytest.mark.skipif(HAVE_RLPYT, reason="checks the behaviour without rlpyt")
def test_without_rlpyt_engine_rlpyt_fails_and_auto_is_native(tmp_path: Path) -> None:
    failed = warmstart(CKPT_DIR=str(tmp_path), **(SHORT_RUN | {"ENGINE": "rlpyt"}))
    assert failed.returncode == 2 and list(tmp_path.iterdir()) == []
    assert failed.stderr.strip().splitlines() == [failed.stderr.strip()]
    assert "rlpyt is not importable here" in failed.stderr
    _train(tmp_path, "auto")
    assert json.loads((tmp_path / "run_0" / "manifest.json").read_text())["engine"] == "native"
