"""How far a snapshot's lineage really trained, when rlpyt's warm start reset its counters.

Every count here is in the lineage's own sampler shape (``lineage_shape``: recorded beside the
snapshot, else ``cum_steps / itr``): rlpyt's standard Atari config samples 2 x 16 = 32 steps
per iteration with 2 updates each, example 1 4 x 1 with 1.

rlpyt's warm-start recipe (``initial_optim_state_dict=``, ``initial_model_state_dict=``)
restarts ``itr`` and ``cum_steps`` at 0 in every continuation while the Adam state, and its
``step`` count, carries over. Such a snapshot has had more optimizer updates than its
``cum_steps`` allow: one run can make at most ``(itr + 1) * updates_per_iteration`` updates at
the replay ratio and shape it trained with. When that bound is broken the counters were reset,
and the real progress is estimated from the update count instead:

    itr ~= ceil(updates / updates_per_iteration) + eps_decay_start_itr - 1

that is, the iterations that ran updates plus the replay fill of the lineage's first run (its
``min_steps_learn``, where its epsilon ramp starts). Every later rlpyt continuation also
refilled an empty replay for its own ``min_steps_learn`` steps without updating, so the
estimate falls short of the real progress by the sum of those fills (500 env steps for one
continuation with ``min_steps_learn=500``); it never overshoots while the replay ratio stayed
the same. ``PROGRESS_STEPS`` replaces the estimate when the user knows better.

An ``AsyncRl`` snapshot (``snapshot.AsyncCounters``) stands at its ``sampler_itr``; its
``cum_updates`` are the updates its own rlpyt run made, so the test is exact there: Adam's
step beyond them was carried over by rlpyt's recipe, and only those earlier updates are
estimated (``_async``). When the parent of a reset snapshot is on the volume, ``chain``
replaces the estimate with the exact sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import COLD_MIN_STEPS_LEARN, EXAMPLE_1, Config, SamplerShape, updates_per_iteration
from . import snapshot as snap
from .records import Records

Counted = snap.Snapshot | snap.Counters
"""A snapshot's counters: loaded whole, or read without its tensors (``read_training``)."""


@dataclass(frozen=True)
class Progress:
    """Where the lineage of a warm-start snapshot stands; the new run continues at ``itr + 1``."""

    itr: int
    source: str  # "counters", "estimate" (reset counters) or "PROGRESS_STEPS"
    updates: int | None  # the optimizer's update count in the snapshot
    allowed_updates: int  # the most its own itr allows at ``replay_ratio``
    replay_ratio: float
    batch_size: int
    shape: SamplerShape  # the lineage's: ``itr`` counts its iterations
    shape_source: str  # where the shape comes from ("manifest.json", "params.json", "counters")
    asynchronous: bool = False  # the snapshot is an AsyncRl runner's
    # an exact chain (``chain``): each snapshot of the lineage, newest first
    links: tuple[dict[str, Any], ...] = ()

    @property
    def cum_steps(self) -> int:
        return self.itr * self.shape.steps_per_itr

    @property
    def steps_done(self) -> int:
        """Env steps the lineage has trained once its iteration ``itr`` is done."""
        return (self.itr + 1) * self.shape.steps_per_itr

    def as_manifest(self) -> dict[str, Any]:
        return {"cum_steps": self.cum_steps, "itr": self.itr, "source": self.source,
                "optimizer_updates": self.updates, "allowed_updates": self.allowed_updates,
                "replay_ratio": self.replay_ratio, "batch_size": self.batch_size,
                "batch_T": self.shape.batch_T, "batch_B": self.shape.batch_B,
                "world_size": self.shape.world_size, "shape_source": self.shape_source,
                "runner": "AsyncRl" if self.asynchronous else "MinibatchRl",
                **({"chain": list(self.links)} if self.links else {})}


def lineage_shape(parent: Counted, records: Records) -> tuple[SamplerShape, str]:
    """The sampler shape ``parent`` was trained in, and where that comes from.

    The record beside it first (this project's manifest, rlpyt's params.json). A record without
    a world size whose counters step by a whole multiple of it was a multi-process run of that
    many processes. Without a record: ``cum_steps / itr``, as ``steps x 1`` (only the product
    matters to the counters); rlpyt example 1's 4 x 1 when the counters cannot tell.
    """
    per_itr = parent.cum_steps // parent.itr if parent.itr > 0 else None
    exact = per_itr is not None and per_itr * parent.itr == parent.cum_steps
    recorded = records.shape
    if recorded is not None:
        source = str(records.shape_source)
        if (recorded.world_size == 1 and exact and per_itr > recorded.steps_per_itr
                and per_itr % recorded.steps_per_itr == 0):
            world = per_itr // recorded.steps_per_itr
            return SamplerShape(recorded.batch_T, recorded.batch_B, world), source + " and counters"
        return recorded, source
    if exact and per_itr != EXAMPLE_1.steps_per_itr:
        return SamplerShape(per_itr, 1), "counters"
    return EXAMPLE_1, "counters" if exact else "default"


def fill_itrs(records: Records, shape: SamplerShape) -> int:
    """Iterations a run of this record sampled before its first update (its
    ``min_steps_learn``; rlpyt's 50,000 where none is recorded)."""
    fill_steps = records.eps_decay_start_steps
    if fill_steps is None:
        fill_steps = COLD_MIN_STEPS_LEARN
    return fill_steps // shape.steps_per_itr


def _async(parent: Counted, records: Records, shape: SamplerShape, per_itr: int,
           at: Callable[..., Progress]) -> Progress:
    """An AsyncRl snapshot's progress: its sampling counters, unless Adam's step exceeds the
    updates its own run made (``cum_updates``); then rlpyt's recipe carried the optimizer over
    and restarted the counters, and the earlier updates are converted to iterations at the
    replay ratio (plus the first run's fill) and added to this run's own. The optimizer of an
    async run may lag the ratio, so this estimate too errs short."""
    counted = parent.asynchronous
    assert counted is not None
    updates = parent.updates
    if records.ours or updates is None or updates <= counted.cum_updates:
        return at(parent.itr, "counters", allowed=counted.cum_updates)
    earlier = updates - counted.cum_updates
    return at(parent.itr + math.ceil(earlier / per_itr) + fill_itrs(records, shape), "estimate",
              allowed=counted.cum_updates)


def of(parent: Counted, records: Records, config: Config) -> Progress:
    """The real progress of ``parent``'s lineage: its counters, or an estimate when the
    optimizer has seen more updates than they allow, or what ``PROGRESS_STEPS`` states.

    The replay ratio and batch size are the ones recorded beside the snapshot (our manifest,
    rlpyt's params.json), else the configured ones; the updates per iteration follow from them
    and the lineage's shape. Our own snapshots never reset their counters.
    """
    shape, shape_source = lineage_shape(parent, records)
    ratio = records.replay_ratio if records.replay_ratio is not None else config.replay_ratio
    batch = records.batch_size or config.batch_size
    per_itr = updates_per_iteration(ratio, shape.sampler_batch, batch)
    allowed = (parent.itr + 1) * per_itr
    updates = parent.updates

    def at(itr: int, source: str, allowed: int = allowed) -> Progress:
        return Progress(itr=itr, source=source, updates=updates, allowed_updates=allowed,
                        replay_ratio=ratio, batch_size=batch, shape=shape,
                        shape_source=shape_source, asynchronous=parent.asynchronous is not None)

    if config.progress_steps is not None:
        return at(config.progress_steps // shape.steps_per_itr, "PROGRESS_STEPS")
    if parent.asynchronous is not None:
        return _async(parent, records, shape, per_itr, at)
    if records.ours or updates is None or updates <= allowed:
        return at(parent.itr, "counters")
    fill = fill_itrs(records, shape)
    return at(max(parent.itr, math.ceil(updates / per_itr) + fill - 1), "estimate")
