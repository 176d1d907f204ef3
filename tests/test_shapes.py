"""Lineages in rlpyt's sampler shapes (example 1's 4 x 1, the standard Atari config's 2 x 16,
the serial config's 8 x 2): where a warm start continues, its epsilon, the reset-counter test
and estimate, conversion to another shape, and the settings recorded beside a snapshot.

Lineages are written with this project's own run writer (``RunDir``) or as rlpyt's experiment
scripts leave them (params.pkl and a nested params.json), from the weights of the real rlpyt
fixture; the decision is checked in-process through ``prepare``, and a few short real runs
check what the trainer does with it.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import FILES_ONLY_RUN, SHORT_RUN, warmstart
from warmstart.checkpoint import progress, records
from warmstart.checkpoint import snapshot as snap
from warmstart.checkpoint.counters import Budget
from warmstart.checkpoint.run import RunDir
from warmstart.checkpoint.start import StartPoint, prepare
from warmstart.config import (
    COLD_MIN_STEPS_LEARN,
    EXAMPLE_1,
    SamplerShape,
    load,
    updates_per_iteration,
)
from warmstart.engine.algos.schedules import EPS_INIT, linear_ramp
from warmstart.errors import ConfigError

SHAPES = [EXAMPLE_1, SamplerShape(2, 16), SamplerShape(8, 2)]
IDS = ["4x1", "2x16", "8x2"]


def _parts(fixture: Path, updates: int) -> dict[str, Any]:
    """The fixture's weights, with an Adam state that has made ``updates`` updates."""
    params = torch.load(fixture, weights_only=True)
    for state in params["optimizer_state_dict"]["state"].values():
        state["step"] = state["step"] * 0 + updates
    return {"model": params["agent_state_dict"]["model"],
            "target": params["agent_state_dict"]["target"],
            "optimizer": params["optimizer_state_dict"]}


def _fill_itrs(shape: SamplerShape, min_steps_learn: int = COLD_MIN_STEPS_LEARN) -> int:
    return min_steps_learn // shape.steps_per_itr


def _our_lineage(ckpt: Path, fixture: Path, shape: SamplerShape, itr: int,
                 **settings: str) -> Path:
    """A finished run of this project in ``shape``, ending at ``itr``, written by RunDir."""
    config = load({"CKPT_DIR": str(ckpt), "BATCH_T": str(shape.batch_T),
                   "BATCH_B": str(shape.batch_B)} | settings)
    per_itr = updates_per_iteration(config.replay_ratio, shape.sampler_batch, config.batch_size)
    run = RunDir.create(ckpt / "lineage", config, engine="native", n_actions=6, parent=None,
                        budget=Budget(0, itr, _fill_itrs(shape), shape), log=lambda _: None)
    updates = per_itr * max(0, itr + 1 - _fill_itrs(shape))  # none before the replay fills
    run.save_snapshot(itr, lambda: _parts(fixture, updates), final=True)
    run.mark("finished")
    run.release()  # that process ended
    return ckpt / "lineage" / "params.pkl"


def _rlpyt_config(shape: SamplerShape, **algo: Any) -> dict[str, Any]:
    """The config rlpyt's Atari DQN experiment scripts log (``configs["dqn"]``'s layout)."""
    return {
        "agent": {},
        "algo": {"discount": 0.99, "batch_size": 128, "learning_rate": 1e-4,
                 "clip_grad_norm": 10.0, "min_steps_learn": 50000, "double_dqn": False,
                 "prioritized_replay": False, "n_step_return": 1, "replay_size": 1000000} | algo,
        "env": {"game": "pong", "episodic_lives": True},
        "eval_env": {"game": "pong", "episodic_lives": False, "horizon": 27000},
        "model": {"dueling": False},
        "optim": {},
        "runner": {"n_steps": 50e6, "log_interval_steps": 1e6},
        "sampler": {"batch_T": shape.batch_T, "batch_B": shape.batch_B,
                    "max_decorrelation_steps": 1000, "eval_n_envs": 4,
                    "eval_max_steps": 125000, "eval_max_trajectories": 100},
        "name": "dqn_pong",
    }


def _rlpyt_run(folder: Path, fixture: Path, *, itr: int, cum_steps: int, updates: int,
               logged: dict[str, Any]) -> Path:
    """A run folder as rlpyt's logger leaves it: params.pkl and the logged params.json."""
    folder.mkdir(parents=True)
    parts = _parts(fixture, updates)
    (folder / "params.pkl").write_bytes(snap.to_bytes(
        itr=itr, cum_steps=cum_steps, model=parts["model"], target=parts["target"],
        optimizer=parts["optimizer"]))
    (folder / "params.json").write_text(json.dumps(logged))
    return folder / "params.pkl"


def _prepare(ckpt: Path, **settings: str) -> tuple[StartPoint, list[str]]:
    logged: list[str] = []
    start = prepare(load({"CKPT_DIR": str(ckpt)} | settings), engine="native", n_actions=6,
                    log=logged.append)
    assert start is not None
    start.run.release()
    return start, logged


def _epsilon(start: StartPoint, itr: int) -> float:
    """The native engine's epsilon for ``itr`` of this run (engine.native's formula)."""
    budget = start.run.budget
    return linear_ramp(itr, budget.eps_decay_start_itr,
                       max(1, start.config.eps_steps // budget.shape.steps_per_itr),
                       EPS_INIT, start.config.eps_final)


def _epsilon_at_steps(steps: int, config: Any) -> float:
    """rlpyt's ramp in env steps: 1.0 until min_steps_learn (50,000), EPS_FINAL at EPS_STEPS."""
    progress_ = min(1.0, max(0.0, (steps - COLD_MIN_STEPS_LEARN)
                             / (config.eps_steps - COLD_MIN_STEPS_LEARN)))
    return 1.0 + progress_ * (config.eps_final - 1.0)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_our_lineage_continues_at_its_progress_in_its_shape(
        shape: SamplerShape, rlpyt_snapshot: Path, tmp_path: Path) -> None:
    itr = 500_000 // shape.steps_per_itr - 1  # 500,000 steps done: half way down the ramp
    parent = _our_lineage(tmp_path, rlpyt_snapshot, shape, itr)
    start, logged = _prepare(tmp_path)
    assert start.snapshot is not None and start.snapshot.path == parent
    assert start.shape == shape and start.first_itr == itr + 1
    assert start.run.budget.cum_steps(start.first_itr) == 500_000  # cum_steps continues
    where = json.loads((start.run.path / "manifest.json").read_text())["start_progress"]
    assert (where["source"], where["batch_T"], where["batch_B"]) == (
        "counters", shape.batch_T, shape.batch_B)
    assert not any("reset its counters" in line for line in logged), logged
    assert _epsilon(start, start.first_itr) == pytest.approx(
        _epsilon_at_steps(500_000, start.config), abs=2e-3)
    params = json.loads((start.run.path / "params.json").read_text())
    assert params["sampler"] == {"batch_T": shape.batch_T, "batch_B": shape.batch_B}


def test_standard_shape_snapshot_is_never_judged_reset(rlpyt_snapshot: Path,
                                                       tmp_path: Path) -> None:
    shape = SamplerShape(2, 16)  # configs["dqn"]: 2 updates of 128 per 32-step iteration
    itr = 40_000
    updates = 2 * (itr + 1 - _fill_itrs(shape))
    path = _rlpyt_run(tmp_path / "rlpyt_run", rlpyt_snapshot, itr=itr, cum_steps=itr * 32,
                      updates=updates, logged=_rlpyt_config(shape))
    # in example 1's shape these updates would be more than the counters allow
    assert updates > (itr + 1) * updates_per_iteration(8, EXAMPLE_1.sampler_batch, 128)
    where = progress.of(snap.read(path), records.beside(path), load({}))
    assert (where.source, where.itr, where.shape) == ("counters", itr, shape)
    assert where.allowed_updates == 2 * (itr + 1)
    start, logged = _prepare(tmp_path)
    assert start.first_itr == itr + 1 and start.shape == shape
    assert start.run.budget.cum_steps(start.first_itr) == (itr + 1) * 32
    assert _epsilon(start, start.first_itr) == start.config.eps_final  # past the ramp
    assert "sampler shape batch_T=2 x batch_B=16 (the lineage's, from params.json)" in "\n".join(
        logged)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_recipe_chain_is_recognised_in_each_shape(shape: SamplerShape, rlpyt_snapshot: Path,
                                                  tmp_path: Path) -> None:
    """rlpyt's recipe: a first run of 400,000 steps, then a continuation of 100,000 whose
    counters restarted at 0 (its own replay fill of 50,000 steps without updates)."""
    per_itr = updates_per_iteration(8, shape.sampler_batch, 128)
    first_itrs, second_itrs = 400_000 // shape.steps_per_itr, 100_000 // shape.steps_per_itr
    fill = _fill_itrs(shape)
    updates = per_itr * (first_itrs - fill) + per_itr * (second_itrs - fill)
    itr = second_itrs - 1
    path = _rlpyt_run(tmp_path / "continued", rlpyt_snapshot, itr=itr,
                      cum_steps=itr * shape.steps_per_itr, updates=updates,
                      logged=_rlpyt_config(shape))
    where = progress.of(snap.read(path), records.beside(path), load({}))
    assert where.source == "estimate" and where.shape == shape
    estimated = -(-updates // per_itr) + fill - 1
    assert where.itr == estimated
    real = first_itrs + second_itrs - 1
    assert real - fill <= where.itr <= real  # short by the continuation's fill only
    start, logged = _prepare(tmp_path)
    assert start.first_itr == estimated + 1 and start.shape == shape
    assert any("reset its counters" in line and str(shape) in line for line in logged), logged


def test_counters_give_the_shape_when_nothing_is_recorded(rlpyt_snapshot: Path,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    path = _rlpyt_run(folder, rlpyt_snapshot, itr=1000, cum_steps=16_000, updates=500,
                      logged={})
    (folder / "params.json").unlink()
    shape, source = progress.lineage_shape(snap.read(path), records.beside(path))
    assert (shape.steps_per_itr, source) == (16, "counters")
    start, _ = _prepare(tmp_path)
    assert start.run.budget.cum_steps(start.first_itr) == 1001 * 16


def test_world_size_logged_or_read_from_the_counters(rlpyt_snapshot: Path,
                                                     tmp_path: Path) -> None:
    shape = SamplerShape(2, 16)
    unlogged = _rlpyt_run(tmp_path / "two_gpus", rlpyt_snapshot, itr=100, cum_steps=100 * 64,
                          updates=10, logged=_rlpyt_config(shape))
    found, source = progress.lineage_shape(snap.read(unlogged), records.beside(unlogged))
    assert (found, source) == (SamplerShape(2, 16, 2), "params.json and counters")
    logged = _rlpyt_config(shape) | {"runner": {"world_size": 4}}
    # not Adam step 10: that would make two_gpus the run it began from (chain.py)
    path = _rlpyt_run(tmp_path / "four_gpus", rlpyt_snapshot, itr=100, cum_steps=100 * 128,
                      updates=11, logged=logged)
    assert records.beside(path).shape == SamplerShape(2, 16, 4)
    start, lines = _prepare(tmp_path, INIT_SNAPSHOT=str(path))
    # one process of 2 x 16 here: the counters convert, the steps done stay
    assert start.shape == shape and start.first_itr == 101 * 128 // 32
    assert any("its counters convert" in line for line in lines), lines


@pytest.mark.parametrize(("lineage", "wanted", "short"), [
    (SamplerShape(2, 16), SamplerShape(4, 1), 0),
    (SamplerShape(8, 2), SamplerShape(5, 1), 1),
    (EXAMPLE_1, SamplerShape(2, 16), 20),
], ids=["2x16-to-4x1", "8x2-to-5x1", "4x1-to-2x16"])
def test_set_shape_converts_the_counters(lineage: SamplerShape, wanted: SamplerShape,
                                         short: int, rlpyt_snapshot: Path,
                                         tmp_path: Path) -> None:
    itr = 100
    _our_lineage(tmp_path, rlpyt_snapshot, lineage, itr)
    done = (itr + 1) * lineage.steps_per_itr
    start, logged = _prepare(tmp_path, BATCH_T=str(wanted.batch_T),
                             BATCH_B=str(wanted.batch_B))
    assert start.shape == wanted
    assert start.first_itr == done // wanted.steps_per_itr
    assert start.run.budget.cum_steps(start.first_itr) == done - short
    line = next(line for line in logged if "its counters convert" in line)
    assert f"the lineage's is {lineage}" in line and f"itr {start.first_itr}" in line
    assert (f"({short} steps short" in line) == bool(short)
    # the epsilon ramp starts where the lineage's did (its itr 1562 of 2 x 16 is 49,984
    # steps), counted in the new iterations
    ramp_start = _fill_itrs(lineage) * lineage.steps_per_itr
    assert start.run.budget.eps_decay_start_itr == ramp_start // wanted.steps_per_itr


def test_one_setting_of_the_shape_keeps_the_other(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    _our_lineage(tmp_path, rlpyt_snapshot, SamplerShape(2, 16), 50)
    start, _ = _prepare(tmp_path, BATCH_B="4")
    assert start.shape == SamplerShape(2, 4)
    (tmp_path / "cold").mkdir()
    cold, _ = _prepare(tmp_path / "cold", BATCH_T="8")
    assert cold.shape == SamplerShape(8, 1) and cold.first_itr == 0


def test_a_run_keeps_its_shape(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    config = load({"CKPT_DIR": str(tmp_path), "RUN_NAME": "job", "BATCH_T": "2",
                   "BATCH_B": "16", "STEPS": "3200"})
    start = prepare(config, engine="native", n_actions=6, log=lambda _: None)
    assert start is not None and start.shape == SamplerShape(2, 16)
    assert start.run.budget.target_itr == 99
    start.run.release()
    again = prepare(load({"CKPT_DIR": str(tmp_path), "RUN_NAME": "job", "STEPS": "6400"}),
                    engine="native", n_actions=6, log=lambda _: None)
    assert again is not None and again.shape == SamplerShape(2, 16)
    assert again.run.budget.target_itr == 199  # STEPS rounds in the run's own shape
    again.run.release()
    with pytest.raises(ConfigError, match="RUN_NAME=job samples batch_T=2 x batch_B=16 but "
                                          "this job has BATCH_B=4"):
        prepare(load({"CKPT_DIR": str(tmp_path), "RUN_NAME": "job", "BATCH_B": "4",
                      "STEPS": "3200"}), engine="native", n_actions=6, log=lambda _: None)


def test_recorded_settings_are_the_lineages_unless_set(rlpyt_snapshot: Path,
                                                       tmp_path: Path) -> None:
    algo = {"target_update_interval": 2000, "eps_steps": 250000, "clip_grad_norm": 5.0,
            "discount": 0.98, "n_step_return": 3, "double_dqn": True,
            "prioritized_replay": True, "replay_ratio": 4}
    logged = _rlpyt_config(SamplerShape(2, 16), **algo)
    logged["agent"] = {"eps_final": 0.001}
    _rlpyt_run(tmp_path / "rlpyt_run", rlpyt_snapshot, itr=5000, cum_steps=5000 * 32,
               updates=100, logged=logged)
    start, lines = _prepare(tmp_path, N_STEP_RETURN="1", DISCOUNT="0.98")
    c = start.config
    assert (c.batch_size, c.target_update_interval, c.eps_steps, c.clip_grad_norm) == (
        128, 2000, 250_000, 5.0)
    assert (c.double_dqn, c.prioritized_replay, c.replay_ratio, c.eps_final) == (
        True, True, 4.0, 0.001)
    assert (c.n_step_return, c.discount, c.dueling) == (1, 0.98, False)  # the user's
    taken = [line for line in lines if line.startswith("settings recorded beside")]
    assert len(taken) == 1 and "BATCH_SIZE=128" in taken[0] and "N_STEP_RETURN" not in taken[0]
    assert "DISCOUNT" not in taken[0]  # set to the recorded value: nothing to say
    assert any(line.startswith("explicit settings differ") and "N_STEP_RETURN=1 (recorded: 3)"
               in line and "DISCOUNT" not in line for line in lines), lines
    manifest = json.loads((start.run.path / "manifest.json").read_text())
    assert manifest["recorded_settings"]["TARGET_UPDATE_INTERVAL"] == 2000
    assert manifest["config"]["EPS_STEPS"] == 250_000  # what the run trains with
    params = json.loads((start.run.path / "params.json").read_text())
    assert params["algo"]["clip_grad_norm"] == 5.0 and params["agent"]["eps_final"] == 0.001


def test_flat_params_json_and_our_manifest_are_records_too(rlpyt_snapshot: Path,
                                                           tmp_path: Path) -> None:
    flat = {"game": "pong", "batch_T": 8, "batch_B": 2, "batch_size": 64, "eps_steps": 3e5}
    path = _rlpyt_run(tmp_path / "flat", rlpyt_snapshot, itr=100, cum_steps=1600, updates=10,
                      logged=flat)
    found = records.beside(path)
    assert found.shape == SamplerShape(8, 2)
    assert found.settings == {"BATCH_SIZE": 64, "EPS_STEPS": 300_000}
    (tmp_path / "ours").mkdir()
    ours = _our_lineage(tmp_path / "ours", rlpyt_snapshot, SamplerShape(4, 4), 10,
                        BATCH_SIZE="64", DOUBLE_DQN="1")
    recorded = records.beside(ours)
    assert recorded.shape == SamplerShape(4, 4) and recorded.ours
    assert recorded.settings["BATCH_SIZE"] == 64 and recorded.settings["DOUBLE_DQN"] is True


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "progress.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_rlpyt_standard_run_continues_on_its_schedule(rlpyt_snapshot: Path,
                                                      tmp_path: Path) -> None:
    """A real run from a snapshot rlpyt's configs["dqn"] shape left at 500,000 steps."""
    shape = SamplerShape(2, 16)
    itr = 500_000 // 32 - 1
    logged = _rlpyt_config(shape, target_update_interval=1000)
    parent = _rlpyt_run(tmp_path / "rlpyt_run", rlpyt_snapshot, itr=itr, cum_steps=itr * 32,
                        updates=2 * (itr + 1 - _fill_itrs(shape)), logged=logged)
    result = warmstart(CKPT_DIR=str(tmp_path), **(FILES_ONLY_RUN | {
        "STEPS": "128", "LOG_EVERY": "32"}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warm start from {parent}" in result.stdout
    assert "reset its counters" not in result.stdout
    assert "BATCH_SIZE=128" in result.stdout and "TARGET_UPDATE_INTERVAL=1000" in result.stdout
    run = tmp_path / "run_0"
    written = torch.load(run / "params.pkl", weights_only=True)
    assert (written["itr"], written["cum_steps"]) == (itr + 4, (itr + 4) * 32)
    rows = _rows(run)
    assert [int(r["Diagnostics/CumSteps"]) for r in rows] == [500_032 + 32 * k for k in range(4)]
    config = load({})
    for row in rows:  # epsilon where rlpyt's ramp has it at those steps, not back at 1.0
        steps = int(row["Diagnostics/CumSteps"]) - 32
        assert float(row["Epsilon"]) == pytest.approx(_epsilon_at_steps(steps, config), abs=2e-3)


def test_native_engine_trains_in_a_2x16_shape(tmp_path: Path) -> None:
    """13 iterations of 16 pong games: a cold run in rlpyt's standard shape, then its
    continuation, which keeps the shape and batch size it recorded."""
    first = warmstart(CKPT_DIR=str(tmp_path), BATCH_T="2", BATCH_B="16", BATCH_SIZE="64",
                      **SHORT_RUN)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "updates start (4 per iteration)" in first.stdout  # round(8 * 32 / 64)
    manifest = json.loads((tmp_path / "run_0" / "manifest.json").read_text())
    assert (manifest["budget"]["batch_T"], manifest["budget"]["batch_B"]) == (2, 16)
    written = torch.load(tmp_path / "run_0" / "params.pkl", weights_only=True)
    assert (written["itr"], written["cum_steps"]) == (12, 384)
    rows = _rows(tmp_path / "run_0")
    assert int(rows[-1]["Diagnostics/CumUpdates"]) == 4 * (
        13 - int(SHORT_RUN["MIN_STEPS_LEARN"]) // 32)
    second = warmstart(CKPT_DIR=str(tmp_path), **(SHORT_RUN | {"STEPS": "64",
                                                              "MIN_STEPS_LEARN": "32"}))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "sampler shape batch_T=2 x batch_B=16 (the lineage's, from manifest.json)" in (
        second.stdout)
    assert "BATCH_SIZE=64" in second.stdout
    continued = torch.load(tmp_path / "run_1" / "params.pkl", weights_only=True)
    assert (continued["itr"], continued["cum_steps"]) == (14, 448)


@pytest.mark.drill
def test_exact_resume_with_several_environments(tmp_path: Path) -> None:
    """RESUME_STATE=full in a 2 x 2 shape: a run trained in two processes (the second extends
    the first's STEPS) ends with the tensors of one trained in one process."""
    job = SHORT_RUN | {"GAME": "breakout", "BATCH_T": "2", "BATCH_B": "2", "STEPS": "480",
                       "MIN_STEPS_LEARN": "100", "REPLAY_SIZE": "200", "LOG_EVERY": "80",
                       "BATCH_SIZE": "8", "REPLAY_RATIO": "2", "TARGET_UPDATE_INTERVAL": "10",
                       "EPS_STEPS": "400", "EPS_FINAL": "0.1", "SEED": "3",
                       "RESUME_STATE": "full", "RUN_NAME": "job"}
    for folder in ("whole", "halves"):
        (tmp_path / folder).mkdir()
    whole = warmstart(CKPT_DIR=str(tmp_path / "whole"), **job)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    half = warmstart(CKPT_DIR=str(tmp_path / "halves"), **(job | {"STEPS": "240"}))
    assert half.returncode == 0, half.stdout + half.stderr
    rest = warmstart(CKPT_DIR=str(tmp_path / "halves"), **job)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert "exact resume from resume-itr_59.npz" in rest.stdout
    ours = torch.load(tmp_path / "halves" / "job" / "params.pkl", weights_only=True)
    theirs = torch.load(tmp_path / "whole" / "job" / "params.pkl", weights_only=True)
    assert ours["itr"] == theirs["itr"] == 119
    for part in ("model", "target"):
        for key, tensor in theirs["agent_state_dict"][part].items():
            assert torch.equal(ours["agent_state_dict"][part][key], tensor), (part, key)
    assert int(_rows(tmp_path / "whole" / "job")[-1]["Diagnostics/CumUpdates"]) > 60


_RLPYT_2X16 = """
import sys, torch
from rlpyt.agents.dqn.atari.atari_dqn_agent import AtariDqnAgent
from rlpyt.algos.dqn.dqn import DQN
from rlpyt.envs.atari.atari_env import AtariEnv, AtariTrajInfo
from rlpyt.runners.minibatch_rl import MinibatchRl
from rlpyt.samplers.serial.sampler import SerialSampler
from rlpyt.utils.logging.context import logger_context

log_dir, config = sys.argv[1], {
    "agent": {}, "algo": {"batch_size": 128, "learning_rate": 1e-4, "clip_grad_norm": 10.0,
                          "min_steps_learn": 320, "replay_size": 2000},
    "env": {"game": "pong"}, "model": {"dueling": False}, "optim": {},
    "runner": {"n_steps": 640, "log_interval_steps": 640},
    "sampler": {"batch_T": 2, "batch_B": 16, "max_decorrelation_steps": 0}}
torch.set_num_threads(1)
runner = MinibatchRl(
    algo=DQN(**config["algo"]), agent=AtariDqnAgent(model_kwargs=config["model"]),
    sampler=SerialSampler(EnvCls=AtariEnv, TrajInfoCls=AtariTrajInfo, env_kwargs=config["env"],
                          **config["sampler"]),
    seed=1, **config["runner"])
with logger_context(log_dir, 0, "dqn_pong", config, snapshot_mode="last", override_prefix=True):
    runner.train()
"""


def test_real_rlpyt_2x16_run_continues(tmp_path: Path) -> None:
    """rlpyt's own 2 x 16 run (the standard config's shape), continued here."""
    pytest.importorskip("rlpyt.runners.minibatch_rl", reason="rlpyt is not importable here")
    made = subprocess.run([sys.executable, "-c", _RLPYT_2X16, str(tmp_path / "rlpyt")],
                          capture_output=True, text=True, timeout=600, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    parent = tmp_path / "rlpyt" / "run_0" / "params.pkl"  # logger_context: <log_dir>/run_<ID>
    counters = snap.read_training(parent)
    assert counters.cum_steps == counters.itr * 32
    result = warmstart(CKPT_DIR=str(tmp_path), **(FILES_ONLY_RUN | {"STEPS": "64"}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reset its counters" not in result.stdout
    written = torch.load(tmp_path / "run_0" / "params.pkl", weights_only=True)
    assert (written["itr"], written["cum_steps"]) == (counters.itr + 2,
                                                       (counters.itr + 2) * 32)
