"""rlpyt-recipe chains, reconstructed exactly when the parent snapshot is on the volume.

A run continued with rlpyt's own recipe (``initial_optim_state_dict=``) restarts ``itr`` and
``cum_steps`` at 0 but keeps Adam's ``step``. The updates a snapshot's own run made follow
from its counters and recorded config (``own_updates``): an ``AsyncRl`` snapshot records them
(``cum_updates``); a ``MinibatchRl`` run makes ``updates_per_iteration`` updates per iteration
once its ``min_steps_learn`` fill is done. So its run began at Adam step ``updates -
own_updates``, and a snapshot on the volume with exactly that step is its parent: the
lineage's real progress is the parent's plus the child's own steps, link by link down to a
run that began at step 0 (or one of ours, whose counters never reset). Where a deeper link's
parent is not on the volume, the updates before that link are estimated as ``progress`` does;
where the snapshot's own parent is absent, ``exact`` gives None and ``progress``'s estimate
stands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, SamplerShape, updates_per_iteration
from . import discovery, progress, records
from . import snapshot as snap
from .counters import steps_done


@dataclass(frozen=True)
class _Link:
    """One snapshot of a chain and what its own rlpyt run did."""

    path: Path
    counters: progress.Counted
    recorded: records.Records

    @property
    def shape(self) -> SamplerShape:
        """The sampler shape of its run (``progress.lineage_shape``)."""
        return progress.lineage_shape(self.counters, self.recorded)[0]

    @property
    def own_steps(self) -> int:
        """Env steps its own run sampled (its counters, which the recipe restarted)."""
        return steps_done(self.counters.itr, self.counters.cum_steps, shape=self.shape)


def own_updates(counters: progress.Counted, recorded: records.Records,
                config: Config) -> int:
    """The optimizer updates a snapshot's own rlpyt run made: an AsyncRl run's
    ``cum_updates``; for MinibatchRl, ``updates_per_iteration`` (its recorded replay ratio and
    batch size, else the configured ones) for every iteration from its fill's end to its
    ``itr`` (``DQN.optimize_agent`` updates from ``min_itr_learn = min_steps_learn //
    (batch_T * batch_B)`` on)."""
    if counters.asynchronous is not None:
        return counters.asynchronous.cum_updates
    shape = progress.lineage_shape(counters, recorded)[0]
    ratio = recorded.replay_ratio if recorded.replay_ratio is not None else config.replay_ratio
    batch = recorded.batch_size or config.batch_size
    per_itr = updates_per_iteration(ratio, shape.sampler_batch, batch)
    return per_itr * max(0, counters.itr + 1 - progress.fill_itrs(recorded, shape))


def start_updates(link: _Link, config: Config) -> int | None:
    """Adam's step when the link's own run began; None when it cannot tell (no optimizer
    state, or a run of ours, whose counters continue its lineage's)."""
    if link.recorded.ours or link.counters.updates is None:
        return None
    return link.counters.updates - own_updates(link.counters, link.recorded, config)


class _Volume:
    """Every snapshot on the volume, its counters read once (without tensors)."""

    def __init__(self, root: Path, game: str) -> None:
        self._game = game
        self._links: list[_Link] | None = None
        self._root = root

    def links(self) -> list[_Link]:
        if self._links is None:
            found = []
            for path in discovery.candidates(self._root):
                recorded = records.beside(path)
                if recorded.game not in (None, self._game):
                    continue
                try:
                    found.append(_Link(path, snap.read_training(path), recorded))
                except snap.SnapshotError:
                    continue  # discovery names unusable files; a chain just skips them
            self._links = found
        return self._links

    def parents(self, child: _Link, step: int, seen: set[Path]) -> list[_Link]:
        """Snapshots with Adam step ``step`` outside the child's own run folder (whose
        ``itr_0.pkl`` holds that step too), not already in the chain and not a copy of the
        child (the same counters: a run still filling its replay began at its own step)."""
        return sorted((link for link in self.links()
                       if link.counters.updates == step and link.path.parent != child.path.parent
                       and link.path.resolve() not in seen and not _same_counters(link, child)),
                      key=lambda link: str(link.path))


def _same_counters(a: _Link, b: _Link) -> bool:
    return (a.counters.itr, a.counters.cum_steps, a.counters.updates) == (
        b.counters.itr, b.counters.cum_steps, b.counters.updates)


def _one(found: list[_Link]) -> _Link | None:
    """The parent among ``found``: copies of one snapshot (the same counters) are one parent;
    snapshots with other counters make it ambiguous (None)."""
    if len({(link.counters.itr, link.counters.cum_steps) for link in found}) != 1:
        return None
    return found[0]


def _earlier_steps(link: _Link, step: int, config: Config) -> int:
    """The steps of a missing parent's lineage, estimated from the ``step`` updates it made:
    iterations at the link's replay ratio plus one replay fill (``progress``'s estimate, which
    errs short by every other fill, and for AsyncRl by any lag of its optimizer)."""
    shape = link.shape
    ratio = (link.recorded.replay_ratio if link.recorded.replay_ratio is not None
             else config.replay_ratio)
    per_itr = updates_per_iteration(ratio, shape.sampler_batch,
                                    link.recorded.batch_size or config.batch_size)
    return (math.ceil(step / per_itr) + progress.fill_itrs(link.recorded, shape)) * (
        shape.steps_per_itr)


def _describe(link: _Link, source: str) -> dict[str, Any]:
    return {"path": str(link.path), "itr": link.counters.itr,
            "cum_steps": link.counters.cum_steps, "steps_done": link.own_steps,
            "optimizer_updates": link.counters.updates,
            "runner": "AsyncRl" if link.counters.asynchronous else "MinibatchRl",
            "source": source}


def _lineage_steps(link: _Link, volume: _Volume, config: Config,
                   seen: set[Path]) -> tuple[int, list[dict[str, Any]]]:
    """Env steps the lineage of ``link`` has trained, and its links, newest first."""
    seen = seen | {link.path.resolve()}
    step = start_updates(link, config)
    if step is None or step <= 0:
        return link.own_steps, [_describe(link, "counters")]
    parent = _one(volume.parents(link, step, seen))
    if parent is None:
        return link.own_steps + _earlier_steps(link, step, config), [_describe(link, "estimate")]
    below, links = _lineage_steps(parent, volume, config, seen)
    return link.own_steps + below, [_describe(link, "counters")] + links


def exact(path: Path, parent: progress.Counted, recorded: records.Records, config: Config,
          log: Callable[[str], None]) -> progress.Progress | None:
    """The exact progress of the lineage of the snapshot at ``path`` (its counters
    ``parent``) when rlpyt's recipe restarted its counters and the snapshot its run began
    from is under ``CKPT_DIR``; None otherwise (its counters stand, or the estimate does)."""
    child = _Link(path, parent, recorded)
    step = start_updates(child, config)
    if step is None or step <= 0:
        return None
    volume = _Volume(config.ckpt_dir, config.game)
    candidates = volume.parents(child, step, {path.resolve()})
    if not candidates:
        return None
    if _one(candidates) is None:
        named = ", ".join(str(c.path) for c in candidates[:3])
        log(f"{path}: its run began at Adam step {step}, which several snapshots on this "
            f"volume with other counters have ({named}); not reconstructing the chain, the "
            "estimate stands")
        return None
    total, links = _lineage_steps(child, volume, config, set())
    base = progress.of(parent, recorded, config)
    spi = base.shape.steps_per_itr
    return progress.Progress(
        itr=max(parent.itr, total // spi - 1), source="chain", updates=parent.updates,
        allowed_updates=base.allowed_updates, replay_ratio=base.replay_ratio,
        batch_size=base.batch_size, shape=base.shape, shape_source=base.shape_source,
        asynchronous=parent.asynchronous is not None, links=tuple(links))
