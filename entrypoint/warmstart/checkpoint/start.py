"""Decide where a job starts: which run folder, which snapshot, which span of iterations.

Read ``prepare`` top to bottom; it follows docs/warm-start.md:
1. ``RUN_NAME`` names a run a previous process of this job started: resume it from its own
   newest snapshot towards its target. ``STEPS`` is the run's total from its start, so a larger
   one extends a run (finished or not) and is recorded; a smaller one never shortens it, and
   after the target an equal or smaller one says so and stops at once. A run whose records
   cannot be read stops the job (exit 7): a trainer never writes into a run it cannot read.
2. Without ``RUN_NAME``, the latest ``run_N`` stopped short of its target and was started with
   exactly this config: the same job restarted, so resume it the same way (a latest run
   whose records are damaged is named in the log and left alone).
3. ``INIT_SNAPSHOT`` names a file: warm-start a new run from it.
4. Otherwise the newest usable snapshot of ``GAME`` anywhere under ``CKPT_DIR`` (warm start),
   or none (cold start). Both are said plainly in the log.
A warm start takes the lineage's recorded settings for those the user left unset
(``_lineage_settings``), checks the snapshot's recorded game, then continues its lineage's real
progress (``checkpoint.progress``): the counters, or an estimate when rlpyt's warm start reset
them; in the lineage's sampler shape unless BATCH_T/BATCH_B say otherwise (``_run_shape``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import (
    COLD_MIN_STEPS_LEARN,
    EXAMPLE_1,
    MAX_STEPS,
    WARM_MIN_STEPS_LEARN,
    Config,
    SamplerShape,
    check_derived,
    settings,
)
from ..errors import ConfigError, RunRecordError, SnapshotError
from . import atomic, capabilities, chain, discovery, lock, progress, records
from . import snapshot as snap
from .counters import Budget
from .manifest import load_manifest
from .resume_state import ResumeState
from .resume_state import find as find_resume_state
from .run import RunDir, latest_run_dir, next_run_name

DEFAULT_LR = 2.5e-4
LR_MAX = next(f.metadata["maximum"] for f in settings() if f.metadata["env"] == "LR")


@dataclass
class StartPoint:
    """Everything the engine needs to know about where it starts."""

    config: Config  # the settings the run trains with: the job's, and its lineage's recorded ones
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

    @property
    def shape(self) -> SamplerShape:
        """The sampler shape this run trains in."""
        return self.run.budget.shape


@dataclass(frozen=True)
class Plan:
    """What this process will train, known before anything is written: what the checks that
    need the machine (its memory) are given, so a job that cannot run stops untouched."""

    config: Config
    budget: Budget  # the run's span, with the target this job trains to
    first_itr: int  # the first iteration this process trains
    restores_replay: bool  # RESUME_STATE=full restores the replay the run had filled

    @property
    def replay_transitions(self) -> int:
        """Transitions the replay will hold by the target: the steps this process samples
        (and, restored, those the run sampled before), at most REPLAY_SIZE."""
        first = self.budget.start_itr if self.restores_replay else self.first_itr
        steps = (self.budget.target_itr - first + 1) * self.budget.shape.steps_per_itr
        return max(0, min(self.config.replay_size, steps))


def _no_check(_: Plan) -> None:
    pass


def _check_reach(config: Config, budget: Budget) -> None:
    """Every counter a run writes stays within MAX_STEPS, the range every reader checks."""
    if budget.target_steps > MAX_STEPS:
        raise ConfigError(
            f"STEPS={config.steps} from the start point's "
            f"{budget.steps_done(budget.start_itr - 1):,} steps done ends at "
            f"{budget.target_steps:,}, past the {MAX_STEPS:_} steps any snapshot counter may "
            "hold; lower STEPS.")


def _fresh_steps(config: Config, warm: bool) -> int:
    if config.min_steps_learn is not None:
        return config.min_steps_learn
    return WARM_MIN_STEPS_LEARN if warm else COLD_MIN_STEPS_LEARN


def _learning_rate(config: Config, snapshot: snap.Snapshot | None) -> tuple[float, str]:
    if config.lr is not None:
        return config.lr, "LR"
    if snapshot is not None and snapshot.lr is not None:
        if snapshot.lr > LR_MAX:  # the range LR itself has: Adam overflows past it
            raise SnapshotError(
                f"{snapshot.path}: its saved learning rate {snapshot.lr:g} is beyond LR's "
                f"range (0 to {LR_MAX:g}); set LR to train from it, or use another snapshot.")
        return snapshot.lr, "snapshot"
    return DEFAULT_LR, "default"


def _check_same_job(run: RunDir, config: Config) -> None:
    for key, value in (("game", config.game), ("dueling", config.dueling)):
        if key == "dueling" and "DUELING" not in config.given:
            continue  # unset: the run's recorded head is this job's too
        if run.manifest[key] != value:
            raise ConfigError(
                f"RUN_NAME={run.name} is a run of {key}={run.manifest[key]} but this job has "
                f"{key}={value}; use another RUN_NAME for a different job.")
    shape = run.budget.shape
    for name, value, recorded in (("BATCH_T", config.batch_t, shape.batch_T),
                                  ("BATCH_B", config.batch_b, shape.batch_B)):
        if value is not None and value != recorded:
            raise ConfigError(
                f"RUN_NAME={run.name} samples {shape} but this job has {name}={value}; a run "
                f"keeps its shape: unset {name}, or use another RUN_NAME for a new run.")


def _lineage_settings(config: Config, recorded: records.Records, where: Path,
                      log: Callable[[str], None]) -> tuple[Config, dict[str, Any]]:
    """The settings a run continuing a lineage trains with: each one the user set is the
    user's; each one left unset is the lineage's, as recorded beside its snapshot (rlpyt's
    params.json, nested or flat, or our manifest); only what neither says is this project's
    default. One log line lists the recorded values that replace a default, another every
    explicit setting that differs from the record. Returns the run's config and what it took
    from the record, by variable name."""
    taken: dict[str, Any] = {}
    overridden = []
    for env, value in recorded.settings.items():
        current = getattr(config, env.lower())
        if env in config.given:
            if current != value:
                overridden.append(f"{env}={current} (recorded: {value})")
        elif current != value:
            taken[env] = value
    if taken:
        log(f"settings recorded beside {where}, used as this run's (set one to change it): "
            + ", ".join(f"{env}={value}" for env, value in taken.items()))
    if overridden:
        log("explicit settings differ from those recorded beside "
            f"{where}: {', '.join(overridden)}")
    return dataclasses.replace(config, **{env.lower(): v for env, v in taken.items()}), taken


def _same_job(manifest: dict[str, Any], config: Config) -> bool:
    """Whether a run's manifest was written by a job with exactly this config (the settings
    it took from its lineage's record set aside: this job would take them too)."""
    taken = manifest.get("recorded_settings") or {}
    ran = {k: v for k, v in manifest["config"].items() if k not in taken}
    return ran == {k: v for k, v in config.as_dict().items() if k not in taken}


def _run_shape(config: Config, lineage: progress.Progress | None,
               log: Callable[[str], None]) -> SamplerShape:
    """The sampler shape of a new run: BATCH_T/BATCH_B where set, else the lineage's (example
    1's 4 x 1 for a cold start). Said in the log when it is not example 1's or converts."""
    base = EXAMPLE_1 if lineage is None else lineage.shape
    shape = SamplerShape(config.batch_t or base.batch_T, config.batch_b or base.batch_B)
    if lineage is None or shape == lineage.shape:
        if shape != EXAMPLE_1:
            source = "BATCH_T/BATCH_B" if lineage is None else f"the lineage's, from {lineage.shape_source}"
            log(f"sampler shape {shape} ({source}): {shape.steps_per_itr} env steps per iteration")
        return shape
    first_itr = lineage.steps_done // shape.steps_per_itr
    short = lineage.steps_done - first_itr * shape.steps_per_itr
    rounded = f" ({short} steps short: whole iterations only)" if short else ""
    log(f"sampler shape {shape} from BATCH_T/BATCH_B, the lineage's is {lineage.shape} (from "
        f"{lineage.shape_source}): its counters convert, {lineage.steps_done:,} steps done at "
        f"its itr {lineage.itr} continue at itr {first_itr}, cum_steps "
        f"{first_itr * shape.steps_per_itr}{rounded}")
    return shape


def _resume(run: RunDir, config: Config, log: Callable[[str], None]) -> StartPoint:
    """Continue the run from its newest snapshot, or from its parent if it never wrote one,
    with the settings it recorded for those this job leaves unset. Reads and checks only:
    ``_take_over`` writes, once every check (the machine's too) has passed."""
    problem = records.manifest_problem(run.manifest)
    if problem is not None:
        raise RunRecordError(f"{run.path}: {problem}; restore the file, or move the folder "
                             "aside, or use another RUN_NAME.")
    config, _ = _lineage_settings(config, records.Records(
        None, None, True, None, None, None, settings=records.manifest_settings(run.manifest)),
        run.path / "manifest.json", log)
    run.config = config
    own = discovery.newest(list(discovery.candidates(run.path)),
                           strict=config.strict_snapshots, log=log)
    start = own
    if own is None and run.manifest["parent"] is not None:
        start = snap.read(Path(run.manifest["parent"]["path"]))
    first_itr = run.budget.start_itr if own is None else own.itr + 1
    exact = None if own is None else find_resume_state(run.path, own, config, log,
                                                       listed=run.listed_resume_states())
    lr, source = _learning_rate(config, start)
    # an exact resume keeps the interrupted process's schedule: its replay is restored
    min_itr_learn = (exact.min_itr_learn if exact is not None
                     else first_itr + _fresh_steps(config, start is not None)
                     // run.budget.shape.steps_per_itr)
    return StartPoint(config=config, run=run, snapshot=start, first_itr=first_itr,
                      min_itr_learn=min_itr_learn,
                      lr=lr, lr_source=source, resumed=True, resume_state=exact)


def _plan_of(start: StartPoint, target_itr: int) -> Plan:
    return Plan(start.config, dataclasses.replace(start.run.budget, target_itr=target_itr),
                start.first_itr, start.resume_state is not None)


def _write_mode(config: Config, log: Callable[[str], None]) -> str:
    """Probe the volume (``capabilities``) once every read-only check has passed and before
    the run is claimed or made: the write mode, or one VolumeError line with nothing written
    but the probe's own hidden file."""
    return capabilities.write_mode(config.ckpt_dir, config.write_mode, log)


def _take_over(run: RunDir, start: StartPoint) -> None:
    """Make the resumed run this process's, once every check passed: its own files checked
    (exit 7 leaves the run as it was), then the claim (lock, lease, an interrupted write
    settled), what a killed writer left removed and the rows after its snapshot dropped."""
    run.check_own_files(start.first_itr)
    run.claim()
    atomic.sweep_temp_files(run.path)  # the run is ours now: what a killed writer left is junk
    own = start.snapshot is not None and start.snapshot.path.parent == run.path
    run.protected = start.snapshot.path if own else None
    run.forget_rows_after(start.first_itr - 1)


def _run_target(run: RunDir, config: Config, log: Callable[[str], None]) -> int | None:
    """The target iteration STEPS, the run's total from its start, gives a reopened run;
    None: nothing to do. Decides only (``_extend`` writes it), so the checks of a resume run
    before anything is written.

    A larger total extends the run (recorded in its manifest's ``targets``); an equal one
    after the target, or a smaller one, never shortens it.
    """
    budget = run.budget
    wanted = budget.start_itr + config.iterations(budget.shape) - 1
    if wanted > budget.target_itr:
        _check_reach(config, dataclasses.replace(budget, target_itr=wanted))
        return wanted
    if not run.finished:
        if wanted < budget.target_itr:
            log(f"run {run.name}: STEPS={config.steps} would end before its target cum_steps "
                f"{budget.target_cum_steps}; a run is never shortened, so it keeps that target")
        return budget.target_itr
    if wanted == budget.target_itr:
        log(f"run {run.name} already reached its target cum_steps {budget.target_cum_steps}; "
            "nothing to do (a larger STEPS extends it)")
    else:
        log(f"run {run.name} already passed the target of STEPS={config.steps} (cum_steps "
            f"{budget.cum_steps(wanted)}): it reached cum_steps {budget.target_cum_steps}; "
            "nothing to do")
    return None


def _extend(run: RunDir, target_itr: int, config: Config, log: Callable[[str], None]) -> None:
    """Record a larger target (``_run_target``) in the run's manifest."""
    budget = run.budget
    if target_itr > budget.target_itr:
        run.set_target(target_itr, steps=config.steps)
        log(f"run {run.name}: STEPS={config.steps} (env steps from the run's start at cum_steps "
            f"{budget.cum_steps(budget.start_itr)}) extends its target from cum_steps "
            f"{budget.target_cum_steps} to {budget.cum_steps(target_itr)}")


def _check_game(parent: snap.Snapshot, recorded: records.Records, config: Config,
                n_actions: int, log: Callable[[str], None]) -> None:
    """Refuse a snapshot whose folder records another game; without a record, say that only
    the action count could be checked (14 games have 6 actions, 52 have 18)."""
    if recorded.game is not None and recorded.game != config.game:
        raise SnapshotError(
            f"{parent.path}: a snapshot of {recorded.game} (its {recorded.game_source} says so) "
            f"but GAME={config.game}; set GAME={recorded.game} to continue it, or point "
            f"INIT_SNAPSHOT/CKPT_DIR at a snapshot of {config.game}.")
    if recorded.game is None:
        log(f"could not confirm the game of {parent.path}: no manifest.json or params.json "
            f"beside it names one; checked only that its actions match GAME={config.game}")
    snap.check_fits(parent, game=config.game, n_actions=n_actions, dueling=config.dueling)


def _asynchronous_line(parent: snap.Snapshot, where: progress.Progress) -> str:
    """Say that ``parent`` is an AsyncRl runner's, and which of its counters the run follows."""
    counted = parent.asynchronous
    assert counted is not None
    return (f"{parent.path}: {counted.describe()}; continuing at its sampling progress "
            f"(sampler_itr {counted.sampler_itr}: {where.steps_done:,} steps done in its lineage), "
            "not at its optimizer iterations")


def _chain_line(parent: snap.Snapshot, where: progress.Progress) -> str:
    """Name the snapshots an exact rlpyt-recipe chain was reconstructed from."""
    own, *below = where.links
    named = "; ".join(f"{link['path']} ({link['steps_done']:,} steps, {link['source']})"
                      for link in below)
    return (f"{parent.path}: rlpyt's recipe restarted its counters and its parent is on this "
            f"volume: the chain is exact, {where.steps_done:,} steps done (its own "
            f"{own['steps_done']:,}, then {named}); continuing at cum_steps {where.cum_steps}")


def _lineage_progress(parent: snap.Snapshot, recorded: records.Records, config: Config,
                      log: Callable[[str], None]) -> progress.Progress:
    """Where the parent's lineage really stands, said in one line when not its counters: an
    exact chain (``chain``), an estimate, or PROGRESS_STEPS; an AsyncRl parent is said too."""
    where = None
    if config.progress_steps is None:
        where = chain.exact(parent.path, parent, recorded, config, log)
    if where is None:
        where = progress.of(parent, recorded, config)
    if where.steps_done > MAX_STEPS:
        raise SnapshotError(
            f"{parent.path}: its optimizer's {where.updates} updates would mean "
            f"{where.steps_done:,} steps done, past the {MAX_STEPS:_} any counter may hold: its "
            "Adam step count is damaged. Set PROGRESS_STEPS, or point INIT_SNAPSHOT at another "
            "snapshot.")
    if parent.asynchronous is not None:
        log(_asynchronous_line(parent, where))
    if where.source == "chain":
        log(_chain_line(parent, where))
    elif where.source == "estimate" and parent.asynchronous is not None:
        log(f"{parent.path}: its optimizer made {where.updates} updates, {where.allowed_updates} "
            "of them in its own run (cum_updates), so a warm start (rlpyt's recipe) reset its "
            f"counters; continuing from an estimated real progress of cum_steps "
            f"{where.cum_steps} (the earlier updates at replay ratio {where.replay_ratio:g}; "
            "short by each earlier replay fill and any lag of the optimizer; PROGRESS_STEPS "
            "states it exactly)")
    elif where.source == "estimate":
        log(f"{parent.path}: its optimizer made {where.updates} updates but its cum_steps "
            f"{parent.cum_steps} allow at most {where.allowed_updates} at replay ratio "
            f"{where.replay_ratio:g} in its sampler shape {where.shape}, so a warm start (rlpyt's recipe) reset its counters; "
            f"continuing from an estimated real progress of cum_steps {where.cum_steps} "
            "(short by each continuation's replay fill; PROGRESS_STEPS states it exactly)")
    elif where.source == "PROGRESS_STEPS":
        log(f"PROGRESS_STEPS={config.progress_steps}: continuing the lineage of {parent.path} "
            f"at cum_steps {where.cum_steps} (its own counters say {parent.cum_steps})")
    return where


def _check_derived(config: Config, shape: SamplerShape, taken: dict[str, Any],
                   where: progress.Progress | None, parent: snap.Snapshot | None) -> None:
    """``check_derived`` in the run's shape; when a value it combines came from the lineage's
    record (a setting left unset, or its sampler shape), the record is named as the cause."""
    try:
        check_derived(config, shape)
    except ConfigError as err:
        recorded = [env for env in ("REPLAY_RATIO", "BATCH_SIZE") if env in taken]
        if (where is not None and where.shape == shape and where.shape_source != "counters"
                and (config.batch_t is None or config.batch_b is None)):
            recorded.append(f"sampler shape {shape}")
        if not recorded or parent is None:
            raise
        raise SnapshotError(
            f"{parent.path.parent}: the lineage's recorded {' and '.join(recorded)} cannot be "
            f"trained as recorded: {err} Set those settings explicitly, or correct the "
            "record.") from None


def _restarted_job(config: Config, log: Callable[[str], None],
                   check: Callable[[Plan], None]) -> StartPoint | None:
    """Without RUN_NAME: resume the latest ``run_N`` when it stopped short of its target and was
    started with exactly this config (the same job restarted); None otherwise. The run is
    looked at before it is locked, so a run that is not resumed keeps its lock file as it was;
    one whose manifest is damaged is named in the log and left alone."""
    latest = latest_run_dir(config.ckpt_dir)
    if latest is None:
        return None
    if lock.held(latest):  # a live trainer's run, not a restart
        log(f"run {latest.name} is being written by another trainer: not resuming it")
        return None

    def same_job(manifest: dict | None) -> bool:
        return (manifest is not None and manifest["status"] != "finished"
                and _same_job(manifest, config))

    try:
        if not same_job(load_manifest(latest)):
            return None
        unfinished = RunDir.open(latest, config, log=log)
    except RunRecordError as err:
        log(f"not resuming run {latest.name}, whose records cannot be read: {err}")
        return None
    if unfinished is None or not same_job(unfinished.manifest):
        if unfinished is not None:
            unfinished.release()
        return None
    log(f"run {unfinished.name} stopped before its target and has this job's exact config: "
        "resuming it")
    with unfinished.failing_records(log):
        start = _resume(unfinished, config, log)
    check(_plan_of(start, unfinished.budget.target_itr))  # a refusal leaves the run as it was
    unfinished.use(_write_mode(start.config, log))
    with unfinished.failing_records(log):
        _take_over(unfinished, start)
    return start


def prepare(config: Config, *, engine: str, n_actions: int, log: Callable[[str], None],
            check: Callable[[Plan], None] = _no_check) -> StartPoint | None:
    """Find the start snapshot and open the run, on a volume ``volume.check`` passed; None if
    the job is done.

    ``check`` is given the plan (settings, span) once it is known and before anything is
    written: the caller's checks of the machine (memory) stop a job that cannot run there."""
    if config.run_name is not None:
        existing = RunDir.open(config.ckpt_dir / config.run_name, config, log=log)
        if existing is not None:
            _check_same_job(existing, config)
            with existing.failing_records(log):
                target_itr = _run_target(existing, config, log)
                if target_itr is None:
                    return None
                start = _resume(existing, config, log)
            check(_plan_of(start, target_itr))  # a refusal leaves even the status as it was
            existing.use(_write_mode(start.config, log))
            with existing.failing_records(log):
                _take_over(existing, start)
                _extend(existing, target_itr, config, log)
            return start
    else:
        resumed = _restarted_job(config, log, check)
        if resumed is not None:
            return resumed

    if config.init_snapshot is not None:
        parent = snap.read(config.init_snapshot)
    else:
        parent = discovery.newest(discovery.candidates(config.ckpt_dir), game=config.game,
                                  strict=config.strict_snapshots, log=log)
    where, taken = None, {}
    if parent is not None:
        recorded = records.beside(parent.path)
        if recorded.problem is not None:
            raise SnapshotError(
                f"{recorded.problem}, so {parent.path} cannot be continued with it: correct or "
                "remove that value (or move the file aside), or point INIT_SNAPSHOT/CKPT_DIR "
                "at another snapshot.")
        config, taken = _lineage_settings(config, recorded, parent.path.parent, log)
        _check_game(parent, recorded, config, n_actions, log)
        where = _lineage_progress(parent, recorded, config, log)
        shape = _run_shape(config, where, log)
        first_itr = where.steps_done // shape.steps_per_itr
        decay_steps = recorded.eps_decay_start_steps
        if decay_steps is None:
            decay_steps = COLD_MIN_STEPS_LEARN
    else:
        if config.progress_steps is not None:
            log("PROGRESS_STEPS is set but there is no snapshot to warm-start from; ignored")
        shape = _run_shape(config, None, log)
        first_itr = 0
        decay_steps = _fresh_steps(config, warm=False)
    budget = Budget(start_itr=first_itr, target_itr=first_itr + config.iterations(shape) - 1,
                    eps_decay_start_itr=decay_steps // shape.steps_per_itr, shape=shape)
    _check_derived(config, shape, taken, where, parent)
    _check_reach(config, budget)
    check(Plan(config, budget, first_itr, restores_replay=False))
    write_mode = _write_mode(config, log)
    name = config.run_name or next_run_name(config.ckpt_dir)
    run = RunDir.create(config.ckpt_dir / name, config, engine=engine, n_actions=n_actions,
                        parent=parent, budget=budget, write_mode=write_mode, log=log)
    with run.failing_records(log):
        run.set_target(budget.target_itr, steps=config.steps)
        if where is not None:
            run.record_progress(where.as_manifest())
        if taken:
            run.record_settings(taken)
    lr, source = _learning_rate(config, parent)
    return StartPoint(config=config, run=run, snapshot=parent, first_itr=first_itr,
                      min_itr_learn=first_itr + _fresh_steps(config, parent is not None)
                      // shape.steps_per_itr,
                      lr=lr, lr_source=source, resumed=False)
