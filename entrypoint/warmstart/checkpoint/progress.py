"""How far a snapshot's lineage really trained, when rlpyt's warm start reset its counters.

rlpyt's warm-start recipe (``initial_optim_state_dict=``, ``initial_model_state_dict=``)
restarts ``itr`` and ``cum_steps`` at 0 in every continuation while the Adam state, and its
``step`` count, carries over. Such a snapshot has had more optimizer updates than its
``cum_steps`` allow: one run can make at most ``(itr + 1) * updates_per_iteration`` updates at
the replay ratio it trained with. When that bound is broken the counters were reset, and the
real progress is estimated from the update count instead:

    itr ~= ceil(updates / updates_per_iteration) + eps_decay_start_itr - 1

that is, the iterations that ran updates plus the replay fill of the lineage's first run (its
``min_steps_learn``, where its epsilon ramp starts). Every later rlpyt continuation also
refilled an empty replay for its own ``min_steps_learn`` steps without updating, so the
estimate falls short of the real progress by the sum of those fills (500 env steps for one
continuation with ``min_steps_learn=500``); it never overshoots while the replay ratio stayed
the same. ``PROGRESS_STEPS`` replaces the estimate when the user knows better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import COLD_MIN_STEPS_LEARN, SAMPLER_BATCH, Config, updates_per_iteration
from . import snapshot as snap
from .records import Records


@dataclass(frozen=True)
class Progress:
    """Where the lineage of a warm-start snapshot stands; the new run continues at ``itr + 1``."""

    itr: int
    source: str  # "counters", "estimate" (reset counters) or "PROGRESS_STEPS"
    updates: int | None  # the optimizer's update count in the snapshot
    allowed_updates: int  # the most its own itr allows at ``replay_ratio``
    replay_ratio: float
    batch_size: int

    @property
    def cum_steps(self) -> int:
        return self.itr * SAMPLER_BATCH

    def as_manifest(self) -> dict[str, Any]:
        return {"cum_steps": self.cum_steps, "itr": self.itr, "source": self.source,
                "optimizer_updates": self.updates, "allowed_updates": self.allowed_updates,
                "replay_ratio": self.replay_ratio, "batch_size": self.batch_size}


def of(parent: snap.Snapshot, records: Records, config: Config) -> Progress:
    """The real progress of ``parent``'s lineage: its counters, or an estimate when the
    optimizer has seen more updates than they allow, or what ``PROGRESS_STEPS`` states.

    The replay ratio is the one recorded beside the snapshot (our manifest, rlpyt's
    params.json), else the configured one. Our own snapshots never reset their counters.
    """
    ratio = records.replay_ratio if records.replay_ratio is not None else config.replay_ratio
    batch = records.batch_size or config.batch_size
    per_itr = updates_per_iteration(ratio, SAMPLER_BATCH, batch)
    allowed = (parent.itr + 1) * per_itr
    updates = parent.updates

    def at(itr: int, source: str) -> Progress:
        return Progress(itr=itr, source=source, updates=updates, allowed_updates=allowed,
                        replay_ratio=ratio, batch_size=batch)

    if config.progress_steps is not None:
        return at(config.progress_steps // SAMPLER_BATCH, "PROGRESS_STEPS")
    if records.ours or updates is None or updates <= allowed:
        return at(parent.itr, "counters")
    fill = records.eps_decay_start_itr
    if fill is None:
        fill = COLD_MIN_STEPS_LEARN // SAMPLER_BATCH
    return at(max(parent.itr, math.ceil(updates / per_itr) + fill - 1), "estimate")
