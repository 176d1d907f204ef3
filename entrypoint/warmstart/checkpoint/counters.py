"""A snapshot's position in the words a user reads, and a job's span in sampler iterations.

rlpyt records ``itr`` and ``cum_steps``; the log, progress.csv, TensorBoard, lineage, inspect
and report all speak of "steps done", worked out here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import EXAMPLE_1, SamplerShape


def steps_done(itr: int, cum_steps: int | None = None, *,
               shape: SamplerShape = EXAMPLE_1) -> int:
    """Env steps trained once iteration ``itr`` is done: the one step count a user reads (log,
    progress.csv's ``CumSteps``, TensorBoard, lineage, inspect).

    rlpyt's snapshot ``cum_steps`` is ``itr`` x the steps per iteration, the steps before the
    snapshot's own iteration. Given it, the steps per iteration come from it; otherwise from
    ``shape``, the run's sampler shape.
    """
    if cum_steps and itr > 0:
        return cum_steps // itr * (itr + 1)
    return (itr + 1) * shape.steps_per_itr


def counters(itr: int, cum_steps: int, *, name: str = "itr") -> str:
    """A snapshot's position in the words of the log, rlpyt's own count named once (``name``:
    ``sampler_itr`` for an AsyncRl snapshot, whose ``itr`` counts optimizer iterations)."""
    return (f"{name} {itr}: {steps_done(itr, cum_steps):,} steps done (cum_steps {cum_steps} "
            "as rlpyt records it)")



@dataclass(frozen=True)
class Budget:
    """The job's span in sampler iterations; it belongs to the run, so restarts share it."""

    start_itr: int  # first iteration this run trains
    target_itr: int  # last iteration: the run is done once it has been snapshotted
    eps_decay_start_itr: int  # where the lineage's epsilon ramp starts (its cold min_steps_learn)
    shape: SamplerShape = EXAMPLE_1  # what one iteration of this run is

    def cum_steps(self, itr: int) -> int:
        """rlpyt's ``cum_steps`` of a snapshot at ``itr`` of this run."""
        return itr * self.shape.steps_per_itr

    def steps_done(self, itr: int) -> int:
        """Env steps done once ``itr`` of this run is done (``steps_done``)."""
        return (itr + 1) * self.shape.steps_per_itr

    @property
    def target_cum_steps(self) -> int:
        return self.cum_steps(self.target_itr)

    @property
    def target_steps(self) -> int:
        """Env steps done at the target (``steps_done``): what the log calls the target."""
        return self.steps_done(self.target_itr)
