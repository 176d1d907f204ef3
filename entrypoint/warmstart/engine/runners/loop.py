"""The runner both engines share: iterate, log, snapshot, report progress, stop on a signal.

rlpyt's shape: a sampler collects one batch of BATCH_T x BATCH_B env steps per iteration
(the run's ``SamplerShape``), the algorithm
optimises once learning has started, and the runner logs every ``LOG_EVERY`` steps with a
snapshot there (``SNAPSHOT_MODE``), as MinibatchRl does. An engine supplies only ``sample`` and
``optimize``; everything a user sees (progress.csv, progress lines, snapshots, the stop after a
signal) is written here, once, so the engines cannot drift apart in what they report.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ...checkpoint.counters import counters
from ...checkpoint.start import StartPoint
from ...config import Config
from ...errors import TrainingDivergedError
from ...reporting.scalars import ScalarLog
from ..samplers.trajectory import TRAJECTORY_KEYS

if TYPE_CHECKING:
    from ..playing.play import Evaluation

PROGRESS_SECONDS = 10.0
RECENT_EPISODES = 10


DUPLICATE_WINDOW_S = 1.0
"""A stop signal this soon after the first is the same request delivered twice, not a second
one: a signal to the whole process group (systemd's KillMode, Slurm's scancel,
``kill -- -PGID``) reaches the trainer microseconds before its parent (GNU make) forwards it."""


class StopRequest:
    """Set by a signal handler; the loop finishes the current iteration, snapshots and stops."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._first_at = 0.0

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def receive(self, name: str) -> str:
        """Record a stop signal; says what it is: ``first``, a ``duplicate`` of the first
        (within DUPLICATE_WINDOW_S), or ``again``, a deliberate second one."""
        now = time.monotonic()
        if self.signal_name is None:
            self.signal_name, self._first_at = name, now
            return "first"
        return "duplicate" if now - self._first_at < DUPLICATE_WINDOW_S else "again"


@dataclass
class OptStats:
    """What the updates of one iteration report (empty lists before learning starts).

    An engine whose updates run on a GPU leaves its reports there, in ``pending`` (one
    ``[loss, grad_norm, td_abs_err...]`` tensor per update), and the runner reads them back
    with ``settle`` at its log points: one device-to-host copy per log point, not one per
    update.
    """

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    td_abs_errs: list[float] = field(default_factory=list)
    pending: list[torch.Tensor] = field(default_factory=list)

    def extend(self, other: OptStats) -> None:
        self.losses += other.losses
        self.grad_norms += other.grad_norms
        self.td_abs_errs += other.td_abs_errs
        self.pending += other.pending

    def settle(self) -> None:
        """Bring the pending reports to the host, in update order, into the lists."""
        if not self.pending:
            return
        reports = torch.stack(self.pending).cpu().double().numpy()
        self.pending = []
        self.losses += reports[:, 0].tolist()
        self.grad_norms += reports[:, 1].tolist()
        self.td_abs_errs += reports[:, 2:].ravel().tolist()


class Engine(Protocol):
    """What the runner needs from an engine."""

    name: str
    device: torch.device
    updates_per_itr: int

    @property
    def update_counter(self) -> int: ...

    @property
    def learning_rate(self) -> float: ...

    def sample(self, itr: int) -> tuple[float, list[dict[str, float]]]:
        """Collect one iteration of env steps; returns epsilon and the finished trajectories."""

    def optimize(self, itr: int) -> OptStats:
        """Store the iteration's samples and run its updates (none before learning starts)."""

    def state(self) -> dict[str, Any]:
        """model, target and optimizer state dicts on the CPU, for a snapshot."""

    def weights(self) -> Mapping[str, torch.Tensor]:
        """The online network's state dict where it lives (no copy), for an evaluation."""

    def close(self) -> None:
        """Release the environments (and their workers) once training is over."""


def _stats(prefix: str, values: list[float]) -> dict[str, float]:
    """rlpyt's five summary columns (Average/Std/Median/Min/Max) of one quantity."""
    if not values:
        return {f"{prefix}{s}": math.nan for s in ("Average", "Std", "Median", "Min", "Max")}
    a = np.asarray(values, dtype=np.float64)
    return {f"{prefix}Average": a.mean(), f"{prefix}Std": a.std(), f"{prefix}Median":
            float(np.median(a)), f"{prefix}Min": a.min(), f"{prefix}Max": a.max()}


def _eval_columns(evaluation: Evaluation | None, cum_eval_time: float,
                  cum_time: float) -> dict[str, float]:
    """MinibatchRlEval's columns: its Diagnostics/ ones, and the eval games' TrajInfo fields
    under ``Eval/`` (rlpyt's eval runner puts them under the bare names, which here hold the
    training games'); NaN and zero counts in a row without an evaluation."""
    trajectories = evaluation.trajectories if evaluation is not None else []
    row = {"Diagnostics/StepsInEval": evaluation.steps if evaluation is not None else 0,
           "Diagnostics/TrajsInEval": len(trajectories),
           "Diagnostics/CumEvalTime": round(cum_eval_time, 3),
           "Diagnostics/CumTrainTime": round(cum_time - cum_eval_time, 3)}
    for key in TRAJECTORY_KEYS:
        row |= _stats(f"Eval/{key}", [t[key] for t in trajectories])
    return row


def check_finite(stats: OptStats, itr: int, engine: Engine) -> None:
    """Stop at the first NaN or infinite loss or gradient norm: the weights are no longer
    finite (or soon will not be), and training on would only write snapshots of NaN. Checks
    the reports already on the host (every iteration, at no cost); pending device reports
    are checked at the log point that settles them, before its snapshot."""
    for name, values in (("loss", stats.losses), ("gradient norm", stats.grad_norms)):
        bad = next((v for v in values if not math.isfinite(v)), None)
        if bad is not None:
            raise TrainingDivergedError(
                f"training diverged: {name} {bad} by itr {itr} (update {engine.update_counter}, "
                f"learning rate {engine.learning_rate:g}); stopped before writing a snapshot, "
                "so the run's last snapshot is the last finite one. Lower LR, or warm-start "
                "from another snapshot.")


def _log_evaluation(log: Callable[[str], None], steps: int, evaluation: Evaluation) -> None:
    cut = f" ({evaluation.truncated} cut at the step limit)" if evaluation.truncated else ""
    log(f"eval at {steps:,} steps: {len(evaluation.trajectories)} games"
        f"{cut}, score {evaluation.summary('GameScore')}, {evaluation.steps} steps in "
        f"{evaluation.seconds:.1f}s")


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def train(engine: Engine, config: Config, start: StartPoint, stop: StopRequest,
          log: Callable[[str], None]) -> str:
    """Run to the budget's target iteration; returns ``finished`` or ``stopped``."""
    run = start.run
    budget = run.budget
    per_itr = budget.shape.steps_per_itr
    log_itrs = max(1, config.log_every // per_itr)
    trajectories: list[dict[str, float]] = []
    opt = OptStats()
    recent_scores: deque[float] = deque(maxlen=RECENT_EPISODES)
    last_row = run.last_row or {}
    cum_time_before = float(last_row.get("Diagnostics/CumTime (s)") or 0.0)
    cum_trajs = int(float(last_row.get("Diagnostics/CumCompletedTrajs") or 0))
    started = last_log_time = last_print = time.monotonic()
    steps_at_print, updates_at_log = 0, engine.update_counter
    last_loss = math.nan  # no update yet: "n/a" in the progress line
    periodic = None
    if config.eval_every:
        from ..playing.play import (
            PeriodicEvaluation,  # the env, video and cv2: only when evaluating
        )

        periodic = PeriodicEvaluation(config, engine.device, run.last_evaluated_cum_steps,
                                      steps_per_itr=per_itr)
    cum_eval_time = float(last_row.get("Diagnostics/CumEvalTime") or 0.0)
    scalars = ScalarLog(log)

    for itr in range(start.first_itr, budget.target_itr + 1):
        epsilon, finished = engine.sample(itr)
        trajectories += finished
        recent_scores.extend(t["GameScore"] for t in finished)
        cum_trajs += len(finished)
        if itr == start.min_itr_learn:
            log(f"replay holds {(itr - start.first_itr + 1) * per_itr} fresh steps: "
                f"updates start ({engine.updates_per_itr} per iteration)")
        stats = engine.optimize(itr)
        check_finite(stats, itr, engine)
        opt.extend(stats)
        if stats.losses:
            last_loss = stats.losses[-1]

        now = time.monotonic()
        # read the flag once: a signal arriving later in this iteration is seen in the next
        # one, so the iteration that returns "stopped" is always the one snapshotted
        stopping = stop.requested
        final = itr == budget.target_itr or stopping
        if (itr + 1) % log_itrs == 0 or final:
            opt.settle()  # the window's device reports, in one copy, checked before a snapshot
            check_finite(opt, itr, engine)
            if opt.losses:
                last_loss = opt.losses[-1]
            evaluation = None
            if periodic is not None and not stopping and periodic.due(itr, end=final):
                log(f"evaluating {config.eval_episodes} game(s) at {budget.steps_done(itr):,} "
                    "steps")
                evaluation = periodic.run(itr, engine.weights(),
                                          should_stop=lambda: stop.requested)
                if evaluation is None:  # a signal came: this log point's snapshot is the last
                    log("evaluation dropped: a stop was requested")
                    stopping = final = True
                else:
                    _log_evaluation(log, budget.steps_done(itr), evaluation)
                    cum_eval_time += evaluation.seconds
                    now = time.monotonic()  # evaluation time is not training time
            eval_seconds = evaluation.seconds if evaluation is not None else 0.0
            elapsed = max(now - last_log_time - eval_seconds, 1e-9)
            steps_in_window = ((itr + 1) % log_itrs or log_itrs) * per_itr
            row = {
                "Diagnostics/Iteration": itr,
                "Diagnostics/CumTime (s)": round(cum_time_before + now - started, 3),
                "Diagnostics/CumSteps": budget.steps_done(itr),
                "Diagnostics/CumCompletedTrajs": cum_trajs,
                "Diagnostics/CumUpdates": engine.update_counter,
                "Diagnostics/StepsPerSecond": steps_in_window / elapsed,
                "Diagnostics/UpdatesPerSecond": (engine.update_counter - updates_at_log) / elapsed,
                "Diagnostics/ReplayRatio": (engine.updates_per_itr * config.batch_size
                                            / per_itr),
                "Epsilon": epsilon,
                "LearningRate": engine.learning_rate,
            }
            for key in TRAJECTORY_KEYS:
                row |= _stats(key, [t[key] for t in trajectories])
            row |= _stats("loss", opt.losses) | _stats("gradNorm", opt.grad_norms)
            row |= _stats("tdAbsErr", opt.td_abs_errs)
            if periodic is not None:
                row |= _eval_columns(evaluation, cum_eval_time, row["Diagnostics/CumTime (s)"])
            run.log_row(row)
            scalars.add(row)
            for name, data in scalars.changed():
                run.put_record(name, data)
            seconds = run.save_snapshot(itr, engine.state, final=final)
            if seconds:
                log(f"snapshot {counters(itr, budget.cum_steps(itr))} written in "
                    f"{seconds:.2f}s")
            trajectories, opt = [], OptStats()
            last_log_time, updates_at_log = now, engine.update_counter

        if now - last_print >= PROGRESS_SECONDS or final:
            if opt.pending:
                opt.settle()
                check_finite(opt, itr, engine)
                last_loss = opt.losses[-1]
            done_steps = (itr - start.first_itr + 1) * per_itr
            rate = (done_steps - steps_at_print) / max(now - last_print, 1e-9)
            left = (budget.target_itr - itr) * per_itr
            score = f"{np.mean(recent_scores):.1f}" if recent_scores else "n/a"
            eta = _format_duration(left / rate) if rate > 0 else "?"
            log(f"itr {itr} | {done_steps}/"
                f"{(budget.target_itr - start.first_itr + 1) * per_itr} steps "
                f"(total {budget.steps_done(itr)}) | {rate:.1f} steps/s | ETA {eta} | "
                f"score(last {len(recent_scores)}) {score} | eps {epsilon:.3f} | "
                f"loss {'n/a' if math.isnan(last_loss) else f'{last_loss:.4f}'}")
            last_print, steps_at_print = now, done_steps
        if stopping and itr < budget.target_itr:
            return "stopped"
    return "finished"
