"""Where a job starts: the snapshot with the most training, rlpyt's reset-counter chains,
the game recorded beside a snapshot, and extending a finished run with a larger STEPS."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FILES_ONLY_RUN, SHORT_RUN, warmstart
from warmstart.checkpoint import chain, discovery, progress, records
from warmstart.checkpoint import snapshot as snap
from warmstart.checkpoint.counters import Budget
from warmstart.checkpoint.run import RunDir
from warmstart.config import load

FIXTURE_UPDATES = 2250  # the fixture's Adam step: itr 2499, updates from itr 250 on


def _rlpyt_continuation(original: Path, folder: Path, *, steps: int) -> Path:
    """A snapshot as rlpyt's warm-start recipe writes it after ``steps`` more env steps:
    ``itr``/``cum_steps`` restart at 0, the Adam state (and its step) carries over, and
    rlpyt's logger writes the run's params.json (example 1's config, min_steps_learn 1000)."""
    params = torch.load(original, weights_only=True)
    itr = steps // 4 - 1
    params["itr"], params["cum_steps"] = itr, itr * 4
    for state in params["optimizer_state_dict"]["state"].values():
        state["step"] = state["step"] + (itr + 1 - 1000 // 4)
    folder.mkdir(parents=True)
    torch.save(params, folder / "params.pkl")
    shutil.copy(original.parent / "params.json", folder / "params.json")
    return folder / "params.pkl"


def _same_mtime(root: Path) -> None:
    """What ``cp -r``, ``kubectl cp`` or an object-store sync leaves: one time for every file."""
    for path in root.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))


def _progress_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "progress.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_read_training_reads_adams_update_count(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    counters = snap.read_training(rlpyt_snapshot)
    assert counters == snap.Counters(itr=2499, cum_steps=9996, updates=FIXTURE_UPDATES)
    assert snap.read(rlpyt_snapshot).updates == FIXTURE_UPDATES
    bare = torch.load(rlpyt_snapshot, weights_only=True)
    del bare["optimizer_state_dict"]
    torch.save(bare, tmp_path / "params.pkl")
    assert snap.read_training(tmp_path / "params.pkl").updates is None


def test_continuation_is_newest_despite_fewer_cum_steps(rlpyt_run_dir: Path) -> None:
    original = rlpyt_run_dir / "pong_example1" / "params.pkl"
    continuation = _rlpyt_continuation(original, rlpyt_run_dir / "continued", steps=4000)
    os.utime(original)  # the original's file is even the newer one: time must not decide
    for copied in (False, True):
        if copied:
            _same_mtime(rlpyt_run_dir)
        logged: list[str] = []
        found = discovery.newest(discovery.candidates(rlpyt_run_dir), strict=False,
                                 log=logged.append, game="pong")
        assert found is not None and found.path == continuation
        assert found.updates == FIXTURE_UPDATES + 750 and found.cum_steps == 3996
        assert len(logged) == 1
        assert logged[0].startswith(f"newest of 2 snapshots: {continuation} (3000 updates")
        assert "passed over despite more cum_steps" in logged[0] and str(original) in logged[0]


def test_reset_counters_are_recognised_and_progress_estimated(rlpyt_snapshot: Path,
                                                               tmp_path: Path) -> None:
    config = load({})
    fixture = snap.read(rlpyt_snapshot)
    own = progress.of(fixture, records.beside(rlpyt_snapshot), config)
    assert (own.source, own.itr) == ("counters", 2499)  # 2250 updates fit 2500 iterations
    path = _rlpyt_continuation(rlpyt_snapshot, tmp_path / "continued", steps=4000)
    where = progress.of(snap.read(path), records.beside(path), config)
    # 3000 updates at 1 per iteration, plus the first run's 250 fill iterations: itr 3249,
    # short of the real 3499 by the continuation's own fill (min_steps_learn 1000 = 250 itr)
    assert (where.source, where.itr, where.cum_steps) == ("estimate", 3249, 12996)
    assert where.allowed_updates == 1000
    stated = progress.of(snap.read(path), records.beside(path), load({"PROGRESS_STEPS": "14000"}))
    assert (stated.source, stated.cum_steps) == ("PROGRESS_STEPS", 14000)
    # a replay ratio recorded beside the snapshot wins over the configured one
    logged = json.loads((path.parent / "params.json").read_text())
    logged["algo"] |= {"replay_ratio": 16, "batch_size": 32}  # 2 updates per iteration
    (path.parent / "params.json").write_text(json.dumps(logged))
    doubled = progress.of(snap.read(path), records.beside(path), config)
    assert (doubled.allowed_updates, doubled.itr) == (2000, 1500 + 250 - 1)


def test_warm_start_from_a_reset_chain_continues_exploration(rlpyt_run_dir: Path) -> None:
    """The continuation's parent is on the volume: the chain is exact (README: an rlpyt-recipe
    chain), 2,500 + 1,000 iterations, where the estimate alone would say 3,250."""
    original = rlpyt_run_dir / "pong_example1" / "params.pkl"
    continuation = _rlpyt_continuation(original, rlpyt_run_dir / "continued", steps=4000)
    _same_mtime(rlpyt_run_dir)
    result = warmstart(CKPT_DIR=str(rlpyt_run_dir), EPS_STEPS="20000", **SHORT_RUN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warm start from {continuation}" in result.stdout
    assert "the chain is exact, 14,000 steps done" in result.stdout
    assert f"then {original} (10,000 steps, counters)" in result.stdout
    assert "cum_steps 13996" in result.stdout and "estimated" not in result.stdout
    run = rlpyt_run_dir / "run_0"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["parent"]["path"] == str(continuation)
    where = manifest["start_progress"]
    assert (where["source"], where["cum_steps"]) == ("chain", 13996)
    assert [link["path"] for link in where["chain"]] == [str(continuation), str(original)]
    written = torch.load(run / "params.pkl", weights_only=True)
    assert list(written) == ["itr", "cum_steps", "agent_state_dict", "optimizer_state_dict"]
    assert written["cum_steps"] == 13996 + 400
    # epsilon ramps from itr 250 to 5000 (EPS_STEPS 20000): the continuation's own counters
    # (itr 1000) would give 0.84, a restart 1.0; the chain (itr 3500+) about 0.32
    epsilon = [float(r["Epsilon"]) for r in _progress_rows(run)]
    assert max(epsilon) < 0.4, epsilon
    # lineage starts the run where the chain really stood, not at the reset counters' 4,000
    shown = warmstart("lineage", str(run))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    row = next(line.split() for line in shown.stdout.splitlines() if line.startswith("run_0"))
    assert "14,000" in row and "4,000" not in row, shown.stdout
    # and, through the chain the manifest records, the rlpyt runs before it at their steps
    lines = shown.stdout.splitlines()
    first = next(line for line in lines if line.startswith("pong_example1"))
    second = next(line for line in lines if line.startswith("continued"))
    assert lines.index(first) < lines.index(second) < lines.index(next(
        line for line in lines if line.startswith("run_0")))
    assert "10,000" in first.split()
    assert "(by Adam's step)" in second and ["10,000", "14,000"] == [
        w for w in second.split() if w in ("10,000", "14,000")], shown.stdout


def test_reset_chain_without_its_parent_is_estimated(rlpyt_run_dir: Path) -> None:
    original = rlpyt_run_dir / "pong_example1" / "params.pkl"
    continuation = _rlpyt_continuation(original, rlpyt_run_dir / "continued", steps=4000)
    shutil.rmtree(original.parent)  # the first run's snapshot is not on this volume
    result = warmstart(CKPT_DIR=str(rlpyt_run_dir), EPS_STEPS="20000", **SHORT_RUN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warm start from {continuation}" in result.stdout
    assert "reset its counters" in result.stdout and "cum_steps 12996" in result.stdout
    assert "chain is exact" not in result.stdout
    run = rlpyt_run_dir / "run_0"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["start_progress"]["source"] == "estimate"
    assert manifest["start_progress"]["cum_steps"] == 12996
    assert "chain" not in manifest["start_progress"]
    written = torch.load(run / "params.pkl", weights_only=True)
    assert written["cum_steps"] == 12996 + 400


def test_progress_steps_without_a_snapshot_is_said_and_ignored(tmp_path: Path) -> None:
    result = warmstart(CKPT_DIR=str(tmp_path), PROGRESS_STEPS="1e6",
                       **(SHORT_RUN | {"STEPS": "8"}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PROGRESS_STEPS is set but there is no snapshot to warm-start from" in result.stdout
    assert "start_progress" not in json.loads((tmp_path / "run_0" / "manifest.json").read_text())


def _recorded_as(folder: Path, game: str) -> None:
    logged = json.loads((folder / "params.json").read_text())
    (folder / "params.json").write_text(json.dumps(logged | {"game": game}))


def test_discovery_considers_only_snapshots_of_game(rlpyt_run_dir: Path) -> None:
    original = rlpyt_run_dir / "pong_example1" / "params.pkl"
    other = _rlpyt_continuation(original, rlpyt_run_dir / "other", steps=8000).parent
    logged_env = json.loads((other / "params.json").read_text())
    del logged_env["game"]  # rlpyt's config-dict experiments log it as env.game
    (other / "params.json").write_text(json.dumps(logged_env | {"env": {"game": "boxing"}}))
    logged: list[str] = []
    found = discovery.newest(discovery.candidates(rlpyt_run_dir), strict=False,
                             log=logged.append, game="pong")
    assert found is not None and found.path == original
    assert logged == [("considering only snapshots of GAME=pong; passed over other games' "
                       f"boxing: 1 ({other / 'params.pkl'})")]
    assert discovery.newest(discovery.candidates(rlpyt_run_dir), strict=False,
                            log=lambda _: None).path == other / "params.pkl"  # most training


def test_snapshot_recorded_as_another_game_is_refused(rlpyt_run_dir: Path) -> None:
    snapshot = rlpyt_run_dir / "pong_example1" / "params.pkl"
    before = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    result = warmstart(CKPT_DIR=str(rlpyt_run_dir), INIT_SNAPSHOT=str(snapshot),
                       GAME="space_invaders", **SHORT_RUN)  # 6 actions, like pong
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [(
        f"warmstart: error: {snapshot}: a snapshot of pong (its params.json says so) but "
        "GAME=space_invaders; set GAME=pong to continue it, or point INIT_SNAPSHOT/CKPT_DIR "
        "at a snapshot of space_invaders.")]
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in rlpyt_run_dir.iterdir()) == ["pong_example1"]


def test_cold_start_beside_other_games_names_them(rlpyt_run_dir: Path) -> None:
    result = warmstart(CKPT_DIR=str(rlpyt_run_dir), GAME="space_invaders",
                       **(SHORT_RUN | {"STEPS": "8"}))
    assert result.returncode == 0, result.stdout + result.stderr
    snapshot = rlpyt_run_dir / "pong_example1" / "params.pkl"
    assert (f"no snapshot of GAME=space_invaders here, only of other games: pong: 1 "
            f"({snapshot}); to continue one of those, set GAME=pong") in result.stdout
    assert "cold start" in result.stdout


def test_unrecorded_game_falls_back_to_the_action_count(rlpyt_snapshot: Path,
                                                        tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(rlpyt_snapshot, ckpt / "params.pkl")  # no params.json, no manifest beside it
    result = warmstart(CKPT_DIR=str(ckpt), **(SHORT_RUN | {"STEPS": "8"}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"could not confirm the game of {ckpt / 'params.pkl'}: no manifest.json or "
            "params.json beside it names one; checked only that its actions match GAME=pong"
            ) in result.stdout
    refused = warmstart(CKPT_DIR=str(ckpt), GAME="breakout", **SHORT_RUN)
    assert refused.returncode == 3 and "6 actions but GAME=breakout has 4" in refused.stderr


def test_larger_steps_extends_a_finished_run(tmp_path: Path) -> None:
    # no updates (MIN_STEPS_LEARN beyond the run): this is about the budget, not learning
    job = FILES_ONLY_RUN | {"RUN_NAME": "job", "CKPT_DIR": str(tmp_path)}
    first = warmstart(**job)
    assert first.returncode == 0, first.stdout + first.stderr
    run = tmp_path / "job"
    finished = hashlib.sha256((run / "params.pkl").read_bytes()).hexdigest()

    same = warmstart(**job)
    assert same.returncode == 0
    assert "run job already reached its target cum_steps 396; nothing to do" in same.stdout
    smaller = warmstart(**(job | {"STEPS": "200"}))
    assert smaller.returncode == 0
    assert ("run job already passed the target of STEPS=200 (cum_steps 196): it reached "
            "cum_steps 396; nothing to do") in smaller.stdout
    assert hashlib.sha256((run / "params.pkl").read_bytes()).hexdigest() == finished

    larger = warmstart(**(job | {"STEPS": "800"}))
    assert larger.returncode == 0, larger.stdout + larger.stderr
    assert ("run job: STEPS=800 (env steps from the run's start at cum_steps 0) extends its "
            "target from cum_steps 396 to 796") in larger.stdout
    assert "resuming run job at itr 100" in larger.stdout
    params = torch.load(run / "params.pkl", weights_only=True)
    assert (params["itr"], params["cum_steps"]) == (199, 796)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["budget"]["target_cum_steps"] == 796
    assert [(t["steps"], t["target_cum_steps"]) for t in manifest["targets"]] == [
        (400, 396), (800, 796)]
    assert len(manifest["starts"]) == 2
    assert [int(r["Diagnostics/Iteration"]) for r in _progress_rows(run)] == [49, 99, 149, 199]



_RLPYT_CHAIN = """
import sys, torch
from rlpyt.agents.dqn.atari.atari_dqn_agent import AtariDqnAgent
from rlpyt.agents.dqn.dqn_agent import DqnAgent
from rlpyt.algos.dqn.dqn import DQN
from rlpyt.envs.atari.atari_env import AtariEnv, AtariTrajInfo
from rlpyt.runners.minibatch_rl import MinibatchRl
from rlpyt.samplers.serial.sampler import SerialSampler
from rlpyt.utils.logging.context import logger_context
from warmstart.engine.runners.rlpyt_engine import wants_whole_agent_state_dict

log_dir, steps = sys.argv[1], int(sys.argv[2])
previous = sys.argv[3] if len(sys.argv) > 3 else None
saved = torch.load(previous, weights_only=True) if previous else None
agent_state = None if saved is None else (
    saved["agent_state_dict"] if wants_whole_agent_state_dict(DqnAgent)
    else saved["agent_state_dict"]["model"])
torch.set_num_threads(1)
runner = MinibatchRl(
    algo=DQN(min_steps_learn=400, replay_size=2000,
             initial_optim_state_dict=None if saved is None else saved["optimizer_state_dict"]),
    agent=AtariDqnAgent(initial_model_state_dict=agent_state),
    sampler=SerialSampler(EnvCls=AtariEnv, TrajInfoCls=AtariTrajInfo,
                          env_kwargs={"game": "pong"}, batch_T=4, batch_B=1,
                          max_decorrelation_steps=0),
    n_steps=steps, log_interval_steps=steps, seed=1)
config = {"game": "pong", "algo": {"min_steps_learn": 400, "replay_size": 2000}}
with logger_context(log_dir, 0, "dqn_pong", config, snapshot_mode="last", override_prefix=True):
    runner.train()
"""


def test_chain_made_by_rlpyt_itself(tmp_path: Path) -> None:
    """rlpyt's own recipe, twice: a 1,200-step pong run and an 800-step continuation."""
    pytest.importorskip("rlpyt.runners.minibatch_rl", reason="rlpyt is not importable here")
    first, second = tmp_path / "first", tmp_path / "second"
    runs = ((first, "1200"), (second, "800", str(first / "run_0" / "params.pkl")))
    for log_dir, *args in runs:
        made = subprocess.run([sys.executable, "-c", _RLPYT_CHAIN, str(log_dir), *args],
                              capture_output=True, text=True, timeout=600, check=False)
        assert made.returncode == 0, made.stdout + made.stderr
    original, continuation = first / "run_0" / "params.pkl", second / "run_0" / "params.pkl"
    # what rlpyt wrote: the counters restarted, Adam's step went on (100 fill itr, then updates)
    assert snap.read_training(original) == snap.Counters(itr=299, cum_steps=1196, updates=200)
    assert snap.read_training(continuation) == snap.Counters(itr=199, cum_steps=796,
                                                             updates=300)
    _same_mtime(tmp_path)
    found = discovery.newest(discovery.candidates(tmp_path), strict=False, log=lambda _: None,
                             game="pong")
    assert found is not None and found.path == continuation
    where = progress.of(found, records.beside(continuation), load({}))
    # real: itr 499 (cum_steps 1996); short by the continuation's 100 fill iterations
    assert (where.source, where.itr) == ("estimate", 399)
    # with the first run's snapshot on the volume, the chain is exact: 1,200 + 800 steps
    exact = chain.exact(continuation, found, records.beside(continuation),
                        load({"CKPT_DIR": str(tmp_path)}), log=lambda _: None)
    assert exact is not None and (exact.source, exact.itr, exact.steps_done) == (
        "chain", 499, 2000)


def test_targets_are_listed_also_for_a_manifest_from_before_them(tmp_path: Path) -> None:
    config = load({"CKPT_DIR": str(tmp_path), "STEPS": "400"})
    run = RunDir.create(tmp_path / "job", config, engine="native", n_actions=6, parent=None,
                        budget=Budget(start_itr=0, target_itr=99, eps_decay_start_itr=12500))
    assert "targets" not in run.manifest  # as a run began before targets were listed
    run.mark("finished")
    run.release()  # that process ended: its lock goes with it
    reopened = RunDir.open(tmp_path / "job", config)
    assert reopened is not None
    reopened.set_target(199, steps=800)
    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    assert manifest["status"] == "running" and manifest["budget"]["target_cum_steps"] == 796
    assert [(t["steps"], t["target_itr"]) for t in manifest["targets"]] == [(400, 99), (800, 199)]


def test_damaged_records_count_as_none(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    path = tmp_path / "params.pkl"
    shutil.copy(rlpyt_snapshot, path)
    for params_json in ("{not json", "[1, 2]", '{"game": 3, "algo": "x"}'):
        (tmp_path / "params.json").write_text(params_json)
        assert records.beside(path) == records.Records(None, None, False, None, None, None)
    (tmp_path / "manifest.json").write_text('{"format": 1, "game": "pong"}')  # no budget
    (tmp_path / "params.json").write_text('{"env": {"game": "pong"}}')
    assert records.beside(path).game_source == "params.json"
