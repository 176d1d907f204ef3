"""A snapshot's lineage: the chain of runs it descends from, read off the run folders.

Each of our runs records its parent snapshot (path and sha256) in ``manifest.json``; following
those links from a run back to a cold start, or to a folder without a manifest (an rlpyt run,
whose own start is unknown), gives the chain ``warmstart lineage`` prints and the learning
curve plots. A recorded path is absolute where the job ran (``/ckpt/run_0/params.pkl`` inside a
container); when it does not exist here, the same folder is looked for under the child run's
own volume (``<volume>/run_0``), the longest matching tail first. Whether the file found there is
still the parent (its sha256) is reported, not assumed.

Scores come from each run's progress.csv: ``GameScoreAverage`` of the training games and
``Eval/GameScoreAverage`` of our evaluations. rlpyt's ``MinibatchRlEval`` logs only its
evaluation games, under the bare names; a run folder with rlpyt's eval columns
(``Diagnostics/StepsInEval``) and no manifest is read that way.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import discovery, safe_read
from ..checkpoint import snapshot as snap
from ..checkpoint.counters import steps_done
from ..checkpoint.manifest import read_manifest
from ..checkpoint.rows import PROGRESS, read_progress
from ..checkpoint.volume_errors import raise_if_outage
from ..errors import SnapshotError
from .table import text_table

SCORE = "GameScoreAverage"
EVAL_SCORE = "Eval/GameScoreAverage"
RLPYT_EVAL_MARK = "Diagnostics/StepsInEval"


@dataclass
class Run:
    """One link of the chain: a run folder, where it started and what it logged."""

    path: Path
    ours: bool  # has our manifest (else: an rlpyt run, or a folder of copied snapshots)
    parent: Path | None  # the parent snapshot as found here (None: cold start or unknown)
    parent_note: str  # "" when the parent was found with its recorded sha256
    start_cum_steps: int  # cum_steps of the parent snapshot (0 for a cold start)
    end_cum_steps: int  # cum_steps of the run's newest snapshot
    status: str
    train_curve: list[tuple[int, float]] = field(default_factory=list)  # (CumSteps, score)
    eval_curve: list[tuple[int, float]] = field(default_factory=list)
    # the same two points as steps done (``steps_done``), the count the table and curve show
    start_steps: int = 0
    end_steps: int = 0

    @property
    def name(self) -> str:
        return self.path.name


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _read_progress(run_dir: Path) -> list[dict[str, str]]:
    """The run's rows; a damaged progress.csv shows as none, since lineage only reports."""
    try:
        return read_progress(run_dir)
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def score_curve(rows: list[dict[str, str]], column: str) -> list[tuple[int, float]]:
    """(CumSteps, value) for every row where ``column`` holds a number."""
    points = []
    for row in rows:
        steps, value = _number(row.get("Diagnostics/CumSteps")), _number(row.get(column))
        if math.isfinite(steps) and math.isfinite(value):
            points.append((int(steps), value))
    return points


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with safe_read.open_file(path, limit=safe_read.SNAPSHOT_LIMIT) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as err:  # unreadable: not the parent; an outage: unknown, so it stops
        raise_if_outage(path, err)
        return None
    return digest.hexdigest()


def _locate(recorded: Path, volume: Path) -> Path | None:
    """The recorded parent file, or the file with the longest matching tail under ``volume``."""
    if recorded.is_file():
        return recorded
    parts = recorded.parts[1:] if recorded.is_absolute() else recorded.parts
    for start in range(len(parts) - 1):
        candidate = volume.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    return None


def _newest_counters(run_dir: Path) -> tuple[int, int, bool]:
    """(itr, cum_steps, asynchronous) of the newest snapshot file directly in ``run_dir``
    (without its tensors; an AsyncRl snapshot's itr is its ``sampler_itr``); (-1, 0, False)
    without one."""
    best = (-1, 0, False)
    for path in run_dir.iterdir():
        if snap.SNAPSHOT_NAME.match(path.name):
            try:
                counters = snap.read_training(path)
                best = max(best, (counters.itr, counters.cum_steps,
                                  counters.asynchronous is not None), key=lambda c: c[1])
            except SnapshotError:
                continue
    return best


RLPYT_RUN = "rlpyt run"
RLPYT_ASYNC_RUN = "rlpyt AsyncRl run"


def read_run(run_dir: Path) -> tuple[Run, dict[str, Any] | None]:
    """One run folder as a link of a chain (``report`` reads folders without a manifest this
    way too), with its manifest when it has one of ours."""
    manifest = read_manifest(run_dir)
    rows = _read_progress(run_dir)
    columns = set(rows[0]) if rows else set()
    if manifest is not None:
        entries = manifest["snapshots"]
        parent = manifest["parent"]
        # where the lineage really stood: an estimate when rlpyt's warm start reset the
        # parent's counters (start_progress), else the parent's own counters
        where = manifest.get("start_progress") or parent
        start = (where["itr"], where["cum_steps"]) if parent else (-1, 0)
        end = max(((e["itr"], e["cum_steps"]) for e in entries), default=start,
                  key=lambda c: c[1])
        return Run(run_dir, True, None, "", start[1], end[1], manifest["status"],
                   score_curve(rows, SCORE), score_curve(rows, EVAL_SCORE),
                   steps_done(*start), steps_done(*end)), manifest
    rlpyt_eval = RLPYT_EVAL_MARK in columns and EVAL_SCORE not in columns
    itr, cum_steps, asynchronous = _newest_counters(run_dir)
    status = (RLPYT_ASYNC_RUN if asynchronous else RLPYT_RUN) if rows else "no manifest"
    return Run(run_dir, False, None, "", 0, cum_steps, status,
               [] if rlpyt_eval else score_curve(rows, SCORE),
               score_curve(rows, SCORE) if rlpyt_eval else [], 0,
               steps_done(itr, cum_steps)), None


def _reconstructed(manifest: dict[str, Any]) -> dict[Path, tuple[Path | None, int]]:
    """An exact rlpyt-recipe chain the run began from (``start_progress.chain``, newest
    first): each of its snapshots' folders, with the snapshot its run began from (None for
    the oldest) and the lineage's steps before it (the whole less its own and those after)."""
    where = manifest.get("start_progress") or {}
    links = where.get("chain")
    if not isinstance(links, list) or not all(
            isinstance(link, dict) and isinstance(link.get("path"), str)
            and isinstance(link.get("steps_done"), int) for link in links):
        return {}
    total = steps_done(where["itr"], where["cum_steps"])
    found: dict[Path, tuple[Path | None, int]] = {}
    after = 0
    for i, link in enumerate(links):
        after += link["steps_done"]
        parent = Path(links[i + 1]["path"]) if i + 1 < len(links) else None
        found[Path(link["path"]).parent] = (parent, max(0, total - after))
    return found


def lineage(run_dir: Path) -> list[Run]:
    """The chain of runs that ends at ``run_dir``, oldest first; beyond an rlpyt run, the
    links of an exact recipe chain its child's manifest records (``start_progress.chain``)."""
    chain: list[Run] = []
    seen: set[Path] = set()
    known: dict[Path, tuple[Path | None, int]] = {}
    current: Path | None = run_dir
    while current is not None and current.resolve() not in seen:
        seen.add(current.resolve())
        run, manifest = read_run(current)
        chain.append(run)
        here, current = current, None
        if manifest is None and here in known:  # a link of a reconstructed rlpyt chain
            parent, before = known[here]
            run.start_steps, run.end_steps = before, before + run.end_steps
            if parent is not None:
                run.parent, run.parent_note = parent, "by Adam's step"
                current = parent.parent if parent.is_file() else None
                if current is None:
                    run.parent_note = "not found here"
        if manifest is not None and manifest["parent"] is not None:
            known = _reconstructed(manifest)
            recorded = manifest["parent"]
            found = _locate(Path(recorded["path"]), run_dir.parent)
            if found is None:
                run.parent_note = "not found here"
                run.parent = Path(recorded["path"])
            else:
                run.parent = found
                if _sha256(found) != recorded["sha256"]:
                    run.parent_note = "sha256 differs: overwritten since"
                current = found.parent
    return chain[::-1]


def run_of(path: Path) -> Path:
    """The run folder a path stands for: a snapshot's folder, a run folder, or (for a volume)
    the folder of its newest snapshot, as training would pick it."""
    if path.is_file():
        return path.parent
    if not path.is_dir():
        what = "not a file or folder" if os.path.lexists(path) else "no such file or folder"
        raise SnapshotError(f"{path}: {what}.")
    if read_manifest(path) is not None or (path / PROGRESS).is_file():
        return path
    newest = discovery.newest(discovery.candidates(path), strict=False, log=lambda _: None)
    if newest is None:
        raise SnapshotError(f"{path}: no run folder and no params.pkl or itr_N.pkl under it.")
    return newest.path.parent


def _last(curve: list[tuple[int, float]]) -> str:
    return f"{curve[-1][1]:.1f}" if curve else "-"


def table(chain: list[Run]) -> str:
    """The chain as a text table, oldest run first, as ``warmstart lineage`` prints it."""
    header = ("run", "parent snapshot", "from step", "to step", "score",
              "eval score", "status")
    rows = [header]
    for i, run in enumerate(chain):
        if run.parent is None:
            parent = "- (cold start)" if run.ours else "- (unknown)"
        else:
            previous = chain[i - 1].path.parent if i else run.path.parent
            try:
                parent = str(run.parent.relative_to(previous))
            except ValueError:
                parent = str(run.parent)
            if run.parent_note:
                parent += f" ({run.parent_note})"
        rows.append((run.name, parent, f"{run.start_steps:,}", f"{run.end_steps:,}",
                     _last(run.train_curve), _last(run.eval_curve), run.status))
    return text_table(rows)
