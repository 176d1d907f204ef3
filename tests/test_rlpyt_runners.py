"""rlpyt's runners beyond MinibatchRl's serial example (docs/rlpyt-runs.md).

- An ``AsyncRl`` snapshot (``itr`` counts optimizer iterations; ``sampler_itr``, ``cum_steps``
  count sampling; ``cum_updates`` the run's own updates) continues at its sampling progress,
  and a run continuing it writes rlpyt's AsyncRl keys in turn.
- A chain made with rlpyt's own recipe (counters restart, Adam's step goes on) whose parent is
  on the volume continues at the exact sum of its runs; without the parent, at the estimate.

The counters are those of real rlpyt runs (rlpyt f04f23d, Python 3.11, torch 2.13 CPU, made in
a scratch venv outside this repository), kept in ``rlpyt_runs.json`` beside this file; the
snapshots are synthesised here from them with this project's own writer
(``snapshot.to_bytes``): with the weights of the shared real rlpyt fixture where a trainer
loads them, with a one-tensor stand-in where only counters are read (``read_training`` never
looks at the weights). ``test_real_*`` make such runs again and skip where rlpyt is absent.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warmstart.checkpoint import chain, progress, records
from warmstart.checkpoint import snapshot as snap
from warmstart.config import SamplerShape, load, updates_per_iteration

RUNS = json.loads((Path(__file__).with_name("rlpyt_runs.json")).read_text())
FEW = settings(max_examples=30, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


def _stand_in_optimizer(updates: int | None) -> dict[str, Any]:
    """Adam's state after ``updates`` updates; None: before any (torch saves no state)."""
    state = {} if updates is None else {0: {
        "step": torch.tensor(float(updates)), "exp_avg": torch.zeros(1),
        "exp_avg_sq": torch.zeros(1)}}
    return {"state": state, "param_groups": [{"lr": 2.5e-4, "params": [0]}]}


def _write(folder: Path, *, itr: int, cum_steps: int, updates: int | None,
           asynchronous: snap.AsyncCounters | None, logged: dict[str, Any],
           weights: dict[str, Any] | None = None) -> Path:
    """A run folder as rlpyt's logger leaves it: params.pkl (this project's writer) and
    params.json; the stand-in model unless ``weights`` (the real fixture's) are given."""
    folder.mkdir(parents=True, exist_ok=True)
    if weights is None:
        parts = {"model": {"w": torch.zeros(1)}, "target": {"w": torch.zeros(1)},
                 "optimizer": _stand_in_optimizer(updates)}
    else:
        parts = dict(weights)
        parts["optimizer"] = _with_step(weights["optimizer"], updates)
    (folder / "params.pkl").write_bytes(snap.to_bytes(
        itr=itr, cum_steps=cum_steps, asynchronous=asynchronous, **parts))
    (folder / "params.json").write_text(json.dumps(logged))
    return folder / "params.pkl"


def _with_step(optimizer: dict[str, Any], updates: int) -> dict[str, Any]:
    state = {k: dict(v, step=v["step"] * 0 + updates) for k, v in optimizer["state"].items()}
    return {"state": state, "param_groups": optimizer["param_groups"]}


def _logged(shape: SamplerShape, min_steps_learn: int, replay_ratio: float = 8,
            batch_size: int = 32) -> dict[str, Any]:
    return {"game": "pong",
            "algo": {"min_steps_learn": min_steps_learn, "replay_ratio": replay_ratio,
                     "batch_size": batch_size, "replay_size": 2000},
            "sampler": {"batch_T": shape.batch_T, "batch_B": shape.batch_B}}


# --- property tests: the decision over a wide space of chains ---------------------------------

@st.composite
def _chains(draw: st.DrawFn) -> dict[str, Any]:
    """A lineage of 1 to 4 rlpyt runs in one shape, each continued with rlpyt's recipe: each
    run MinibatchRl (updates at the replay ratio after its fill) or AsyncRl (any number of
    updates: the optimizer keeps its own pace), each making at least one update."""
    shape = SamplerShape(draw(st.integers(1, 8)), draw(st.integers(1, 16)))
    ratio = draw(st.sampled_from([1, 2, 4, 8, 16]))
    batch = draw(st.sampled_from([8, 32, 64]))
    per_itr = updates_per_iteration(ratio, shape.sampler_batch, batch)
    runs = []
    fill = draw(st.integers(0, 40))  # the recipe's runs share their config
    for _ in range(draw(st.integers(1, 4))):
        itrs = draw(st.integers(fill + 1, fill + 300))  # the run's sampler iterations
        asynchronous = draw(st.booleans())
        # AsyncRl's optimizer is throttled to the replay ratio at most
        own = (draw(st.integers(1, per_itr * (itrs - fill))) if asynchronous
               else per_itr * (itrs - fill))
        runs.append({"fill": fill, "itrs": itrs, "own": own, "asynchronous": asynchronous,
                     "opt_itr": draw(st.integers(0, 5000))})
    return {"shape": shape, "ratio": ratio, "batch": batch, "runs": runs,
            "present": draw(st.lists(st.booleans(), min_size=len(runs), max_size=len(runs)))}


def _lay_out(root: Path, drawn: dict[str, Any]) -> list[Path]:
    """Write every run's last snapshot (oldest first) into its own folder under ``root``."""
    shape, step, paths = drawn["shape"], 0, []
    for i, run in enumerate(drawn["runs"]):
        step += run["own"]
        itr = run["itrs"] - 1
        counted = (snap.AsyncCounters(run["opt_itr"], itr, run["own"])
                   if run["asynchronous"] else None)
        paths.append(_write(root / f"run{i}", itr=itr, cum_steps=itr * shape.steps_per_itr,
                            updates=step, asynchronous=counted,
                            logged=_logged(shape, run["fill"] * shape.sampler_batch,
                                           drawn["ratio"], drawn["batch"])))
    return paths


@FEW
@given(drawn=_chains())
def test_a_recipe_chain_on_the_volume_continues_at_its_exact_sum(
        drawn: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("chain")
    paths = _lay_out(root, drawn)
    *ancestors, newest = paths
    for path, present in zip(ancestors, drawn["present"], strict=False):
        if not present:
            path.unlink()
    config = load({"CKPT_DIR": str(root)})
    counters, recorded = snap.read_training(newest), records.beside(newest)
    found = chain.exact(newest, counters, recorded, config, log=lambda _: None)
    shape = drawn["shape"]
    own_steps = [run["itrs"] * shape.steps_per_itr for run in drawn["runs"]]
    truth = sum(own_steps)
    if not ancestors or not drawn["present"][len(ancestors) - 1]:
        assert found is None  # a run of its own, or its parent absent: counters or estimate
        return
    assert found is not None and found.source == "chain"
    missing = [i for i, present in enumerate(drawn["present"][:len(ancestors)]) if not present]
    if not missing:
        assert found.steps_done == truth
        assert [link["path"] for link in found.links] == [str(p) for p in paths[::-1]]
        return
    # the chain is exact down to the newest missing parent, estimated (short) below it
    exact_part = sum(own_steps[missing[-1] + 1:])
    assert exact_part < found.steps_done <= truth
    assert found.links[-1]["source"] == "estimate"


@FEW
@given(sampler_itr=st.integers(0, 10**6), opt_itr=st.integers(0, 10**6),
       cum_updates=st.integers(0, 10**6), batch=st.integers(1, 64))
def test_an_async_snapshot_stands_at_its_sampling_progress(
        sampler_itr: int, opt_itr: int, cum_updates: int, batch: int,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever its optimizer did (AsyncRl's updates are no function of its steps), a run
    that began afresh (Adam's step = cum_updates) continues at sampler_itr, never at itr."""
    root = tmp_path_factory.mktemp("async")
    path = _write(root / "async_run", itr=opt_itr, cum_steps=sampler_itr * batch,
                  updates=cum_updates,
                  asynchronous=snap.AsyncCounters(opt_itr, sampler_itr, cum_updates),
                  logged={"game": "pong", "sampler": {"batch_T": batch, "batch_B": 1}})
    counters = snap.read_training(path)
    assert (counters.itr, counters.cum_steps) == (sampler_itr, sampler_itr * batch)
    where = progress.of(counters, records.beside(path), load({}))
    assert (where.source, where.itr, where.asynchronous) == ("counters", sampler_itr, True)
    assert where.steps_done == (sampler_itr + 1) * batch


@FEW
@given(sampler_itr=st.integers(0, 10**5), own=st.integers(0, 10**5),
       earlier=st.integers(1, 10**6))
def test_an_async_continuation_without_its_parent_is_estimated_past_its_own_run(
        sampler_itr: int, own: int, earlier: int,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Adam's step beyond cum_updates: rlpyt's recipe carried the optimizer over; the estimate
    adds the earlier updates' iterations (and the first fill) to the run's own sampling."""
    root = tmp_path_factory.mktemp("async")
    shape = SamplerShape(5, 4)
    path = _write(root / "async_run", itr=7, cum_steps=sampler_itr * 20, updates=own + earlier,
                  asynchronous=snap.AsyncCounters(7, sampler_itr, own),
                  logged=_logged(shape, 1000))
    where = progress.of(snap.read_training(path), records.beside(path), load({}))
    per_itr = updates_per_iteration(8, 20, 32)
    assert where.source == "estimate"
    assert where.itr == sampler_itr + math.ceil(earlier / per_itr) + 1000 // 20
    assert where.allowed_updates == own


# --- AsyncRl snapshots, continued by the trainer ---------------------------------------------

def _fixture_weights(rlpyt_snapshot: Path) -> dict[str, Any]:
    params = torch.load(rlpyt_snapshot, weights_only=True)
    return {"model": params["agent_state_dict"]["model"],
            "target": params["agent_state_dict"]["target"],
            "optimizer": params["optimizer_state_dict"]}


ASYNC_LOGGED = {"game": "pong",
                "algo": {"min_steps_learn": 500, "eps_steps": 2000, "replay_ratio": 8,
                         "batch_size": 32, "replay_size": 2000},
                "sampler": {"batch_T": 4, "batch_B": 1}}
"""An AsyncRl run's logged config: its epsilon ramp ends at 2,000 steps."""


def _async_parent(ckpt: Path, rlpyt_snapshot: Path) -> Path:
    """The issue's snapshot: itr 90 (optimizer iterations), sampler_itr 749, cum_steps 2996,
    as rlpyt's AsyncRl leaves a run of 4 x 1 iterations whose optimizer made 91 updates; a
    progress.csv with AsyncRl's columns beside it."""
    path = _write(ckpt / "async_dqn", itr=90, cum_steps=2996, updates=91,
                  asynchronous=snap.AsyncCounters(90, 749, 91), logged=ASYNC_LOGGED,
                  weights=_fixture_weights(rlpyt_snapshot))
    (path.parent / "progress.csv").write_text(
        "Diagnostics/Iteration,Diagnostics/SamplerIteration,Diagnostics/CumSteps,"
        "Diagnostics/CumUpdates\n90,749,2996,91\n")
    return path


def _rows(run: Path) -> list[dict[str, str]]:
    import csv

    with open(run / "progress.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_async_run_continues_at_its_sampling_progress(rlpyt_snapshot: Path,
                                                      tmp_path: Path) -> None:
    from conftest import FILES_ONLY_RUN, warmstart

    parent = _async_parent(tmp_path, rlpyt_snapshot)
    result = warmstart(CKPT_DIR=str(tmp_path), **FILES_ONLY_RUN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"warm start from {parent} (sampler_itr 749: 3,000 steps done (cum_steps 2996 as "
            "rlpyt records it)") in result.stdout
    assert (f"{parent}: an asynchronous rlpyt run (AsyncRl): its itr 90 counts optimizer "
            "iterations, sampler_itr 749 its sampling, cum_updates 91 its own updates; "
            "continuing at its sampling progress") in result.stdout
    assert "reset its counters" not in result.stdout
    run = tmp_path / "run_0"
    where = json.loads((run / "manifest.json").read_text())["start_progress"]
    assert (where["runner"], where["source"], where["itr"], where["cum_steps"]) == (
        "AsyncRl", "counters", 749, 2996)
    # epsilon where the lineage's ramp has it at 3,000 steps (past its end: 0.01), not 0.94
    epsilon = [float(r["Epsilon"]) for r in _rows(run)]
    assert epsilon and all(e == pytest.approx(0.01) for e in epsilon), epsilon
    # the continuation keeps AsyncRl's keys, its sampler_itr the lineage's sampling
    written = torch.load(run / "params.pkl", weights_only=True)
    assert list(written) == ["itr", "sampler_itr", "cum_steps", "cum_updates",
                             "agent_state_dict", "optimizer_state_dict"]
    assert (written["sampler_itr"], written["cum_steps"]) == (849, 849 * 4)
    assert (written["itr"], written["cum_updates"]) == (90, 91)  # no updates in this run

    again = warmstart(CKPT_DIR=str(tmp_path), **(FILES_ONLY_RUN | {"STEPS": "40"}))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"warm start from {run / 'params.pkl'} (sampler_itr 849: 3,400 steps" in again.stdout
    assert "reset its counters" not in again.stdout
    assert torch.load(tmp_path / "run_1" / "params.pkl",
                      weights_only=True)["sampler_itr"] == 859

    shown = warmstart("lineage", str(run))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    row = next(line.split() for line in shown.stdout.splitlines() if line.startswith("run_0"))
    assert row[2:4] == ["3,000", "3,400"], shown.stdout
    report = warmstart("report", str(tmp_path))
    assert report.returncode == 0, report.stdout + report.stderr
    line = next(line for line in report.stdout.splitlines() if line.startswith("async_dqn"))
    assert "3,000" in line and "rlpyt AsyncRl run" in line, report.stdout
    inspect = warmstart("inspect", str(parent))
    assert inspect.returncode == 0, inspect.stdout + inspect.stderr
    assert "optimizer iterations: an asynchronous rlpyt run, AsyncRl" in inspect.stdout
    assert "3,000" in inspect.stdout


def test_async_recipe_chain_is_exact_with_its_parent_and_estimated_without(
        rlpyt_snapshot: Path, tmp_path: Path) -> None:
    """An AsyncRl run continued with rlpyt's recipe: its own 2,000 steps and 60 updates
    (cum_updates), Adam's step 151 = the parent's 91 + 60."""
    from warmstart.checkpoint.start import prepare

    _async_parent(tmp_path, rlpyt_snapshot)
    child = _write(tmp_path / "async_dqn_2", itr=50, cum_steps=1996, updates=151,
                   asynchronous=snap.AsyncCounters(50, 499, 60), logged=ASYNC_LOGGED,
                   weights=_fixture_weights(rlpyt_snapshot))
    for present in (True, False):
        if not present:
            (tmp_path / "async_dqn" / "params.pkl").unlink()
        lines: list[str] = []
        start = prepare(load({"CKPT_DIR": str(tmp_path)}), engine="native", n_actions=6,
                        log=lines.append)
        assert start is not None and start.snapshot is not None
        start.run.release()
        assert start.snapshot.path == child
        where = json.loads((start.run.path / "manifest.json").read_text())["start_progress"]
        shutil.rmtree(start.run.path)  # the next start is a new warm start, not its restart
        said = "\n".join(lines)
        assert "an asynchronous rlpyt run (AsyncRl)" in said
        if present:  # 3,000 + 2,000 steps
            assert (where["source"], where["cum_steps"], start.first_itr) == ("chain", 4996, 1250)
            assert where["chain"][1]["path"] == str(tmp_path / "async_dqn" / "params.pkl")
            assert "the chain is exact, 5,000 steps done" in said
        else:  # its own 500 iterations, 91 earlier updates (1 per iteration), a 125-itr fill
            assert (where["source"], where["itr"]) == ("estimate", 499 + 91 + 125)
            assert "151 updates, 60 of them in its own run (cum_updates)" in said


# --- the counters of real rlpyt runs (rlpyt_runs.json) -----------------------------------------

def _recorded_logged(run: dict[str, Any]) -> dict[str, Any]:
    """The config those runs logged as params.json."""
    return {"game": "pong",
            "algo": {"min_steps_learn": run["min_steps_learn"], "replay_size": 2000,
                     "batch_size": 32, "replay_ratio": 8},
            "sampler": {"batch_T": run["batch_T"], "batch_B": run["batch_B"]}}


def _recorded_chain(name: str) -> list[str]:
    """``name`` and its recorded parents, newest first."""
    names = [name]
    while RUNS["runs"][names[-1]]["parent"] is not None:
        names.append(RUNS["runs"][names[-1]]["parent"])
    return names


def _lay_out_recorded(root: Path, name: str) -> Path:
    """Stand-in snapshots with the recorded counters of ``name`` and its parents."""
    for link in _recorded_chain(name):
        run, counted = RUNS["runs"][link], RUNS["runs"][link]["snapshot"]
        asynchronous = None
        if run["runner"] == "AsyncRl":
            asynchronous = snap.AsyncCounters(counted["itr"], counted["sampler_itr"],
                                              counted["cum_updates"])
        _write(root / link / "run_0", itr=counted.get("sampler_itr", counted["itr"]),
               cum_steps=counted["cum_steps"], updates=counted["adam_step"],
               asynchronous=asynchronous, logged=_recorded_logged(run))
    return root / name / "run_0" / "params.pkl"


def _steps_sampled(run: dict[str, Any]) -> int:
    """What a run of ``n_steps`` samples: whole log intervals of whole iterations."""
    batch = run["batch_T"] * run["batch_B"]
    return run["n_steps"] // batch * batch


@pytest.mark.parametrize("name", sorted(RUNS["runs"]))
def test_recorded_runs_counters_are_read_as_their_runner_means(name: str,
                                                                tmp_path: Path) -> None:
    """Each real run's own updates follow from its counters and config as chain.py says:
    MinibatchRl's from its fill on, AsyncRl's its cum_updates; its steps from its sampling."""
    run = RUNS["runs"][name]
    path = _lay_out_recorded(tmp_path, name)
    counters, recorded = snap.read_training(path), records.beside(path)
    assert (counters.itr + 1) * run["batch_T"] * run["batch_B"] == _steps_sampled(run)
    own = chain.own_updates(counters, recorded, load({}))
    assert counters.updates == run["snapshot"]["adam_step"]
    if run["parent"] is None:  # a run from scratch: all its updates (none: no Adam state)
        assert own == (run["snapshot"]["adam_step"] or 0)
    else:
        parent = RUNS["runs"][run["parent"]]["snapshot"]["adam_step"] or 0
        assert own == run["snapshot"]["adam_step"] - parent
    assert (counters.asynchronous is not None) == (run["runner"] == "AsyncRl")


CHAINS = sorted(name for name, run in RUNS["runs"].items() if run["parent"] is not None
                and RUNS["runs"][run["parent"]]["snapshot"]["adam_step"])
"""Continuations whose parent's optimizer made updates: Adam's step shows where they began."""


def test_a_parent_without_updates_leaves_no_chain(tmp_path: Path) -> None:
    """The real AsyncCpuSampler pair: the first run's optimizer never stepped (its sampler
    finished first), so its snapshot has no Adam state and the continuation's step begins at
    0. Nothing shows the chain: each snapshot stands at its own counters."""
    path = _lay_out_recorded(tmp_path, "async_cpu_2x4_second")
    counters, recorded = snap.read_training(path), records.beside(path)
    config = load({"CKPT_DIR": str(tmp_path)})
    assert chain.exact(path, counters, recorded, config, log=lambda _: None) is None
    where = progress.of(counters, recorded, config)
    assert (where.source, where.steps_done) == ("counters", 480)


@pytest.mark.parametrize("name", CHAINS)
def test_recorded_recipe_chains_are_exact_with_their_parents(name: str, tmp_path: Path) -> None:
    path = _lay_out_recorded(tmp_path, name)
    config = load({"CKPT_DIR": str(tmp_path)})
    counters, recorded = snap.read_training(path), records.beside(path)
    truth = sum(_steps_sampled(RUNS["runs"][link]) for link in _recorded_chain(name))
    found = chain.exact(path, counters, recorded, config, log=lambda _: None)
    assert found is not None and (found.source, found.steps_done) == ("chain", truth)
    for link in _recorded_chain(name)[1:]:
        shutil.rmtree(tmp_path / link)
    assert chain.exact(path, counters, recorded, config, log=lambda _: None) is None
    estimate = progress.of(counters, recorded, config)
    assert estimate.source == "estimate" and estimate.steps_done < truth


def test_recorded_cpu_sampler_chain_in_8x2(tmp_path: Path) -> None:
    """The issue's case: two CpuSampler runs of 3,184 steps in 8 x 2, the second continued
    with rlpyt's recipe. Estimated: 5,392 steps (short by the second fill, 976); exact with
    the first run's snapshot on the volume: 6,368."""
    name = "cpu_8x2_second"
    if name not in RUNS["runs"]:
        pytest.skip("the 8 x 2 continuation is not recorded")
    path = _lay_out_recorded(tmp_path, name)
    config = load({"CKPT_DIR": str(tmp_path)})
    counters, recorded = snap.read_training(path), records.beside(path)
    found = chain.exact(path, counters, recorded, config, log=lambda _: None)
    assert found is not None and found.steps_done == 6368
    shutil.rmtree(tmp_path / "cpu_8x2_first")
    assert progress.of(counters, recorded, config).steps_done == 5392


# --- real rlpyt runs (skipped where rlpyt is not importable) -----------------------------------

_RLPYT_RUN = """
import sys, torch
from rlpyt.agents.dqn.atari.atari_dqn_agent import AtariDqnAgent
from rlpyt.algos.dqn.dqn import DQN
from rlpyt.envs.atari.atari_env import AtariEnv, AtariTrajInfo
from rlpyt.utils.collections import AttrDict
from rlpyt.utils.logging.context import logger_context

runner_kind, sampler_kind, log_dir = sys.argv[1:4]
T, B, steps, fill = map(int, sys.argv[4:8])
saved = torch.load(sys.argv[8], weights_only=True) if len(sys.argv) > 8 else None
torch.set_num_threads(1)
algo_kwargs = dict(min_steps_learn=fill, replay_size=2000, batch_size=32, replay_ratio=8)
algo = DQN(**algo_kwargs, initial_optim_state_dict=saved and saved["optimizer_state_dict"])
agent = AtariDqnAgent(initial_model_state_dict=saved and saved["agent_state_dict"])
sampler_kwargs = dict(EnvCls=AtariEnv, TrajInfoCls=AtariTrajInfo, env_kwargs={"game": "pong"},
                      batch_T=T, batch_B=B, max_decorrelation_steps=0)
cpus = dict(master_cpus=[0], workers_cpus=[0, 1], master_torch_threads=1,
            worker_torch_threads=1, set_affinity=False, cuda_idx=None, alternating=False)
if runner_kind == "MinibatchRl":
    from rlpyt.runners.minibatch_rl import MinibatchRl
    from rlpyt.samplers.parallel.cpu.sampler import CpuSampler
    from rlpyt.samplers.serial.sampler import SerialSampler
    Sampler = {"SerialSampler": SerialSampler, "CpuSampler": CpuSampler}[sampler_kind]
    runner = MinibatchRl(algo=algo, agent=agent, sampler=Sampler(**sampler_kwargs),
                         n_steps=steps, log_interval_steps=steps, seed=1, affinity=cpus)
else:
    from rlpyt.runners.async_rl import AsyncRl
    from rlpyt.samplers.async_.cpu_sampler import AsyncCpuSampler
    from rlpyt.samplers.async_.serial_sampler import AsyncSerialSampler
    Sampler = {"AsyncSerialSampler": AsyncSerialSampler,
               "AsyncCpuSampler": AsyncCpuSampler}[sampler_kind]
    affinity = AttrDict(sampler=cpus, optimizer=[dict(cpus=[1], torch_threads=1,
                                                      cuda_idx=None, set_affinity=False)])
    runner = AsyncRl(algo=algo, agent=agent, sampler=Sampler(**sampler_kwargs), n_steps=steps,
                     log_interval_steps=steps // 4, seed=1, affinity=affinity)
config = {"game": "pong", "algo": algo_kwargs, "sampler": {"batch_T": T, "batch_B": B}}
with logger_context(log_dir, 0, "dqn_pong", config, snapshot_mode="last", override_prefix=True):
    runner.train()
"""


def _real_run(log_dir: Path, runner: str, sampler: str, shape: tuple[int, int], steps: int,
              fill: int, parent: Path | None = None) -> Path:
    import subprocess
    import sys

    args = [runner, sampler, str(log_dir), *map(str, (*shape, steps, fill))]
    made = subprocess.run([sys.executable, "-c", _RLPYT_RUN, *args,
                           *([str(parent)] if parent else [])],
                          capture_output=True, text=True, timeout=900, check=False)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    return log_dir / "run_0" / "params.pkl"  # logger_context: <log_dir>/run_<ID>


@pytest.mark.parametrize(("runner", "sampler", "shape"), [
    ("MinibatchRl", "SerialSampler", (4, 1)),
    ("MinibatchRl", "CpuSampler", (8, 2)),
    ("AsyncRl", "AsyncSerialSampler", (4, 1)),
    ("AsyncRl", "AsyncCpuSampler", (2, 4)),
], ids=["serial-4x1", "cpu-8x2", "async-serial-4x1", "async-cpu-2x4"])
def test_real_recipe_chain_in_each_runner(runner: str, sampler: str, shape: tuple[int, int],
                                          tmp_path: Path) -> None:
    """rlpyt itself: a run of 480 steps, then its continuation with rlpyt's recipe; the chain
    is read at its sampling progress and summed exactly, 960 steps. (An AsyncRl optimizer may
    not have stepped at all by the time its sampler finishes so few steps: then no Adam state
    is saved and nothing shows the chain, as the recorded AsyncCpuSampler pair shows.)"""
    pytest.importorskip("rlpyt.runners.async_rl", reason="rlpyt is not importable here")
    first = _real_run(tmp_path / "first", runner, sampler, shape, 480, 160)
    second = _real_run(tmp_path / "second", runner, sampler, shape, 480, 160, parent=first)
    for path in (first, second):
        counters = snap.read_training(path)
        assert (counters.itr + 1) * shape[0] * shape[1] == 480
        assert (counters.asynchronous is not None) == (runner == "AsyncRl")
    config = load({"CKPT_DIR": str(tmp_path)})
    counters, recorded = snap.read_training(second), records.beside(second)
    began = snap.read_training(first).updates  # None: its optimizer never stepped
    found = chain.exact(second, counters, recorded, config, log=lambda _: None)
    if not began:  # an async optimizer can lag its sampler that far: no trace of the chain
        assert runner == "AsyncRl" and found is None
        return
    assert chain.start_updates(chain._Link(second, counters, recorded), config) == began
    assert found is not None and (found.source, found.steps_done) == ("chain", 960)
