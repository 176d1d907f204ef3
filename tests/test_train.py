"""End to end, as a user runs it: `warmstart train` on real ALE games, cold then warm."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SHORT_RUN, ColdThenWarm, warmstart
from warmstart.engine.hardware.cpus import usable_cpus


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(ckpt: Path, **extra: str):
    result = warmstart(CKPT_DIR=str(ckpt), **(SHORT_RUN | extra))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_cold_start_then_warm_start_continues(cold_then_warm: ColdThenWarm) -> None:
    """The session's shared pair (conftest), read only."""
    ckpt, first, second = cold_then_warm.ckpt, cold_then_warm.cold, cold_then_warm.warm
    assert "cold start" in first.stdout
    snapshot = ckpt / "run_0" / "params.pkl"
    params = torch.load(snapshot, weights_only=True)
    assert (params["itr"], params["cum_steps"]) == (99, 396)  # 100 iterations of 4 steps
    assert set(params["agent_state_dict"]) == {"model", "target"}
    assert params["optimizer_state_dict"]["state"], "updates ran, so Adam has state"
    manifest = json.loads((ckpt / "run_0" / "manifest.json").read_text())
    assert manifest["parent"] is None and manifest["status"] == "finished"
    assert manifest["snapshots"][-1]["sha256"] == _sha(snapshot)
    assert {"python", "torch", "ale-py", "warmstart"} <= set(manifest["versions"])
    progress = (ckpt / "run_0" / "progress.csv").read_text().splitlines()
    assert progress[0].startswith("Diagnostics/Iteration,") and len(progress) == 3
    # one step count in the log; rlpyt's cum_steps named once where a snapshot shows
    assert "snapshot itr 99: 400 steps done (cum_steps 396 as rlpyt records it)" in first.stdout
    assert "(total 400)" in first.stdout and "done: final snapshot itr 99: 400 steps" in first.stdout

    assert (f"warm start from {snapshot} (itr 99: 400 steps done (cum_steps 396 as rlpyt "
            "records it)") in second.stdout
    assert "itr 100 -> 199 (steps done 400 -> 800)" in second.stdout
    warm = torch.load(ckpt / "run_1" / "params.pkl", weights_only=True)
    assert (warm["itr"], warm["cum_steps"]) == (199, 796)
    manifest = json.loads((ckpt / "run_1" / "manifest.json").read_text())
    assert manifest["parent"]["sha256"] == _sha(snapshot)
    assert manifest["parent"]["cum_steps"] == 396


def test_warm_start_from_rlpyt_fixture(rlpyt_run_dir: Path, rlpyt_snapshot: Path) -> None:
    original = torch.load(rlpyt_snapshot, weights_only=True)
    result = _train(rlpyt_run_dir)
    assert "warm start from" in result.stdout and "pong_example1/params.pkl" in result.stdout
    assert "learning rate 0.00025 (from snapshot)" in result.stdout
    written = torch.load(rlpyt_run_dir / "run_0" / "params.pkl", weights_only=True)
    assert list(written) == list(original)
    assert written["cum_steps"] == 9996 + 400 and written["itr"] == 2499 + 100
    for part in ("model", "target"):
        ours, theirs = written["agent_state_dict"][part], original["agent_state_dict"][part]
        assert list(ours) == list(theirs)
        for key in theirs:
            assert ours[key].shape == theirs[key].shape and ours[key].dtype == theirs[key].dtype
    adam_before = original["optimizer_state_dict"]["state"][0]["step"]
    adam_after = written["optimizer_state_dict"]["state"][0]["step"]
    # one update per 4 steps after MIN_STEPS_LEARN fresh ones: Adam's state came across
    assert adam_after == adam_before + (400 - int(SHORT_RUN["MIN_STEPS_LEARN"])) // 4
    assert written["optimizer_state_dict"]["param_groups"][0]["eps"] == pytest.approx(0.01 / 32)
    # epsilon continued from the snapshot's schedule instead of restarting at 1.0
    progress = (rlpyt_run_dir / "run_0" / "progress.csv").read_text().splitlines()
    header, last = progress[0].split(","), progress[-1].split(",")
    assert float(last[header.index("Epsilon")]) < 1.0


def test_lr_applies_only_when_set(rlpyt_run_dir: Path) -> None:
    result = _train(rlpyt_run_dir, LR="1e-4")
    assert "learning rate 0.0001 (from LR)" in result.stdout
    written = torch.load(rlpyt_run_dir / "run_0" / "params.pkl", weights_only=True)
    assert written["optimizer_state_dict"]["param_groups"][0]["lr"] == pytest.approx(1e-4)


def test_breakout_dueling_double_prioritized(tmp_path: Path) -> None:
    _train(tmp_path, GAME="breakout", DUELING="1", DOUBLE_DQN="1", PRIORITIZED_REPLAY="1",
           N_STEP_RETURN="3", TORCH_THREADS="")  # empty is unset: every usable CPU
    params = torch.load(tmp_path / "run_0" / "params.pkl", weights_only=True)
    model = params["agent_state_dict"]["model"]
    assert model["head.advantage_out.weight"].shape == (4, 512)
    manifest = json.loads((tmp_path / "run_0" / "manifest.json").read_text())
    assert manifest["starts"][0]["torch_threads"] == usable_cpus()  # TORCH_THREADS unset
    assert not (tmp_path / "run_0" / "learning_curve.png").exists()  # LEARNING_CURVE=0


def test_dueling_mismatch_is_refused(rlpyt_run_dir: Path) -> None:
    result = warmstart(CKPT_DIR=str(rlpyt_run_dir), DUELING="1", **SHORT_RUN)
    assert result.returncode == 3 and "set DUELING=0" in result.stderr


def test_truncated_only_snapshot_is_refused_untouched(rlpyt_run_dir: Path) -> None:
    snapshot = rlpyt_run_dir / "pong_example1" / "params.pkl"
    snapshot.write_bytes(snapshot.read_bytes()[: 5_000_000])
    before = _sha(snapshot)
    result = warmstart(CKPT_DIR=str(rlpyt_run_dir), **SHORT_RUN)
    assert result.returncode == 3 and "params.pkl" in result.stderr
    assert _sha(snapshot) == before


def test_code_carrying_init_snapshot_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pkl"
    marker = tmp_path / "pwned"
    torch.save({"itr": 1, "cum_steps": 4, "agent_state_dict": {},
                "x": _Exec(f"open({str(marker)!r}, 'w').close()")}, evil)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    result = warmstart(CKPT_DIR=str(ckpt), INIT_SNAPSHOT=str(evil), **SHORT_RUN)
    assert result.returncode == 3 and "would run code on load" in result.stderr
    assert not marker.exists()
    assert list(ckpt.iterdir()) == []


class _Exec:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def test_replay_too_big_for_memory_exits_2_writing_nothing(tmp_path: Path) -> None:
    """Too big at the size the replay reaches by the run's target (tests/test_memory.py has
    the plan's other parts); a REPLAY_SIZE the run never fills is no problem."""
    result = warmstart(CKPT_DIR=str(tmp_path),
                       **(SHORT_RUN | {"REPLAY_SIZE": "1e9", "STEPS": "1e9"}))
    assert result.returncode == 2 and "REPLAY_SIZE=1,000,000,000" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_ckpt_dir_exits_4(tmp_path: Path) -> None:
    result = warmstart(CKPT_DIR=str(tmp_path / "nope"), **SHORT_RUN)
    assert result.returncode == 4
    assert "CKPT_DIR=" in result.stderr and "does not exist" in result.stderr


def test_inspect_summarises_and_rejects(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    result = warmstart("inspect", str(rlpyt_snapshot))
    assert result.returncode == 0, result.stderr
    assert "cum_steps" in result.stdout and "9996" in result.stdout
    assert re.search(r"^steps done +10,000 ", result.stdout, re.MULTILINE)
    assert "pong" in result.stdout and "3,620,518" in result.stdout
    bad = tmp_path / "params.pkl"
    shutil.copyfile(rlpyt_snapshot, bad)
    bad.write_bytes(bad.read_bytes()[:1000])
    result = warmstart("inspect", str(bad))
    assert result.returncode == 3 and "params.pkl" in result.stderr


def test_our_snapshot_loads_with_rlpyts_recipe(tmp_path: Path) -> None:
    """Where rlpyt is installed: the seed recipe (DQN + AtariDqnAgent) loads what we write."""
    dqn = pytest.importorskip("rlpyt.algos.dqn.dqn", reason="rlpyt is not importable here")
    from rlpyt.agents.dqn.atari.atari_dqn_agent import AtariDqnAgent
    from rlpyt.envs.atari.atari_env import AtariEnv as RlpytAtariEnv

    _train(tmp_path)
    snap = torch.load(tmp_path / "run_0" / "params.pkl")  # the recipe, as users type it
    algo = dqn.DQN(min_steps_learn=1e3, initial_optim_state_dict=snap["optimizer_state_dict"])
    agent = AtariDqnAgent(initial_model_state_dict=snap["agent_state_dict"])
    agent.initialize(RlpytAtariEnv(game="pong").spaces)
    algo.agent = agent
    algo.optim_initialize()
    for name, tensor in snap["agent_state_dict"]["model"].items():
        assert torch.equal(agent.model.state_dict()[name], tensor)
    steps = {float(s["step"]) for s in algo.optimizer.state_dict()["state"].values()}
    assert steps == {float(snap["optimizer_state_dict"]["state"][0]["step"])} and steps != {0.0}
