"""Decide where a job starts: which run folder, which snapshot, which span of iterations.

Four cases, in this order:
1. ``RUN_NAME`` names a run a previous process of this job started: resume it from its own
   newest snapshot towards the same target (or stop at once if it already finished).
2. Without ``RUN_NAME``, the latest ``run_N`` stopped short of its target and was started with
   exactly this config: the same job restarted, so resume it the same way.
3. ``INIT_SNAPSHOT`` names a file: warm-start a new run from it.
4. Otherwise the newest usable snapshot anywhere under ``CKPT_DIR`` (warm start), or none
   (cold start). Both are said plainly in the log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import COLD_MIN_STEPS_LEARN, SAMPLER_BATCH, WARM_MIN_STEPS_LEARN, Config
from ..errors import ConfigError
from . import atomic, discovery, lock, volume
from . import snapshot as snap
from .resume_state import ResumeState
from .resume_state import find as find_resume_state
from .run import Budget, RunDir, latest_run_dir, next_run_name, read_manifest

DEFAULT_LR = 2.5e-4


@dataclass
class StartPoint:
    """Everything the engine needs to know about where it starts."""

    run: RunDir
    snapshot: snap.Snapshot | None
    first_itr: int  # the first iteration this process trains
    min_itr_learn: int  # updates start at this iteration (the replay refills first)
    lr: float
    lr_source: str  # why this lr: "LR", "snapshot" or "default"
    resumed: bool  # this process continues a run that an earlier process of the job began
    # RESUME_STATE=full: the state saved beside the snapshot, restored by the engine (exact)
    resume_state: ResumeState | None = None

    @property
    def warm(self) -> bool:
        return self.snapshot is not None


def _lineage_decay_start(parent: snap.Snapshot) -> int | None:
    """The epsilon ramp's start recorded beside a parent snapshot, by us or by rlpyt.

    Our manifest records it; rlpyt's params.json records ``algo.min_steps_learn`` when the
    user set it (example 1 does). Without either, rlpyt's default applies.
    """
    manifest = read_manifest(parent.path.parent)
    if manifest is not None:
        return int(manifest["budget"]["eps_decay_start_itr"])
    try:
        logged = json.loads((parent.path.parent / "params.json").read_text())
        return int(float(logged["algo"]["min_steps_learn"])) // SAMPLER_BATCH
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fresh_steps(config: Config, warm: bool) -> int:
    if config.min_steps_learn is not None:
        return config.min_steps_learn
    return WARM_MIN_STEPS_LEARN if warm else COLD_MIN_STEPS_LEARN


def _learning_rate(config: Config, snapshot: snap.Snapshot | None) -> tuple[float, str]:
    if config.lr is not None:
        return config.lr, "LR"
    if snapshot is not None and snapshot.lr is not None:
        return snapshot.lr, "snapshot"
    return DEFAULT_LR, "default"


def _check_same_job(run: RunDir, config: Config) -> None:
    for key, value in (("game", config.game), ("dueling", config.dueling)):
        if run.manifest[key] != value:
            raise ConfigError(
                f"RUN_NAME={run.name} is a run of {key}={run.manifest[key]} but this job has "
                f"{key}={value}; use another RUN_NAME for a different job.")


def _resume(run: RunDir, config: Config, log: Callable[[str], None]) -> StartPoint:
    """Continue the run from its newest snapshot, or from its parent if it never wrote one."""
    atomic.sweep_temp_files(run.path)  # the run is ours now: what a killed writer left is junk
    own = discovery.newest(list(discovery.candidates(run.path)),
                           strict=config.strict_snapshots, log=log)
    start = own
    if own is None and run.manifest["parent"] is not None:
        start = snap.read(Path(run.manifest["parent"]["path"]))
    first_itr = run.budget.start_itr if own is None else own.itr + 1
    run.protected = None if own is None else own.path
    run.forget_rows_after(first_itr - 1)
    lr, source = _learning_rate(config, start)
    exact = None if own is None else find_resume_state(run.path, own, config, log)
    # an exact resume keeps the interrupted process's schedule: its replay is restored
    min_itr_learn = (exact.min_itr_learn if exact is not None
                     else first_itr + _fresh_steps(config, start is not None) // SAMPLER_BATCH)
    return StartPoint(run=run, snapshot=start, first_itr=first_itr, min_itr_learn=min_itr_learn,
                      lr=lr, lr_source=source, resumed=True, resume_state=exact)


def prepare(config: Config, *, engine: str, n_actions: int,
            log: Callable[[str], None]) -> StartPoint | None:
    """Check the volume, find the start snapshot and open the run; None if the job is done."""
    volume.check(config.ckpt_dir, n_actions=n_actions, dueling=config.dueling)
    if config.run_name is not None:
        existing = RunDir.open(config.ckpt_dir / config.run_name, config, log=log)
        if existing is not None:
            _check_same_job(existing, config)
            if existing.finished:
                return None
            return _resume(existing, config, log)
    else:
        latest = latest_run_dir(config.ckpt_dir)
        if latest is not None and lock.held(latest):  # a live trainer's run, not a restart
            log(f"run {latest.name} is being written by another trainer: not resuming it")
            latest = None
        unfinished = None if latest is None else RunDir.open(latest, config, log=log)
        if (unfinished is not None and not unfinished.finished
                and unfinished.manifest["config"] == config.as_dict()):
            log(f"run {unfinished.name} stopped before its target and has this job's exact "
                "config: resuming it")
            return _resume(unfinished, config, log)
        if unfinished is not None:
            unfinished.release()

    if config.init_snapshot is not None:
        parent = snap.read(config.init_snapshot)
    else:
        parent = discovery.newest(discovery.candidates(config.ckpt_dir),
                                  strict=config.strict_snapshots, log=log)
    if parent is not None:
        snap.check_fits(parent, game=config.game, n_actions=n_actions, dueling=config.dueling)
        first_itr = parent.itr + 1
        decay_start = _lineage_decay_start(parent)
        if decay_start is None:
            decay_start = COLD_MIN_STEPS_LEARN // SAMPLER_BATCH
    else:
        first_itr = 0
        decay_start = _fresh_steps(config, warm=False) // SAMPLER_BATCH
    budget = Budget(start_itr=first_itr, target_itr=first_itr + config.iterations - 1,
                    eps_decay_start_itr=decay_start)
    name = config.run_name or next_run_name(config.ckpt_dir)
    run = RunDir.create(config.ckpt_dir / name, config, engine=engine, n_actions=n_actions,
                        parent=parent, budget=budget, log=log)
    lr, source = _learning_rate(config, parent)
    return StartPoint(run=run, snapshot=parent, first_itr=first_itr,
                      min_itr_learn=first_itr + _fresh_steps(config, parent is not None)
                      // SAMPLER_BATCH,
                      lr=lr, lr_source=source, resumed=False)
