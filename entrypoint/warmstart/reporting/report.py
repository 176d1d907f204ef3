"""``warmstart report``: the operator's view of a volume, one row per run folder.

Each row comes from a run's ``manifest.json`` (game, seed, budget, snapshots, status) and its
``progress.csv`` (latest training and evaluation score), read with the same readers training
and ``lineage`` use; none of our snapshots is opened, so hundreds of runs take a moment (docs/evaluation.md
has the figure for 500). A damaged or half-written file costs its run one line under the table, never
the report.

Status: ``finished`` (target reached), ``stopped by a signal`` (SIGTERM/SIGINT; a Job's next
pod resumes it), ``running`` (the manifest says so and was written within ``abandoned_after``),
``abandoned`` (the manifest says running but has not been written for longer: its trainer was
killed, or its pod is gone and nothing resumed it), ``failed`` (a start stopped on an error after
making the folder: bad settings found late, a full volume, training that diverged; the error's
line is printed under the table). A running trainer rewrites the manifest at
every snapshot, so the threshold must exceed the time between snapshots. Folders without our
manifest show as ``rlpyt run`` (an rlpyt ``progress.csv``; ``rlpyt AsyncRl run`` when its
snapshot is an asynchronous runner's, whose steps count from ``sampler_itr``) or ``no
manifest``, and ours with a damaged one as ``manifest unreadable``.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint import object_store
from ..checkpoint.counters import steps_done
from ..checkpoint.manifest import MANIFEST, newest_record
from ..checkpoint.rows import PROGRESS, read_progress
from ..errors import RunRecordError, SnapshotError
from .curve import SHORT_SERIES
from .lineage import EVAL_SCORE, SCORE, read_run, score_curve
from .table import text_table

if TYPE_CHECKING:  # matplotlib is optional: imported only where a plot is drawn
    from matplotlib.figure import Figure

LEGEND_ROWS = 20
"""A panel's legend takes another column per this many runs."""
STOPPED = "stopped by a signal"
DAMAGED = "manifest unreadable"
FAILED = "failed"
STATUS_ORDER = ("running", STOPPED, "abandoned", FAILED, "finished", DAMAGED, "rlpyt run",
                "rlpyt AsyncRl run", "no manifest")


@dataclass
class RunRow:
    """What the report shows of one run folder."""

    path: Path
    game: str = "-"
    seed: int | None = None
    reached: int | None = None  # steps done at the newest snapshot (``steps_done``)
    target: int | None = None  # steps done at the budget's target iteration
    status: str = "no manifest"
    updated_age_s: float | None = None  # seconds since manifest.json was last written
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    eval_curve: list[tuple[int, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per damaged file
    error: str | None = None  # why a failed run failed, as its trainer recorded it

    @property
    def name(self) -> str:
        return self.path.name

    def note(self, file: str, problem: str) -> None:
        self.problems.append(f"{self.name}/{file}: {problem}")


def _get(manifest: dict[str, Any], *keys: str, kind: type | tuple[type, ...]) -> Any:
    """``manifest[k1][k2]...`` when it is there and of ``kind`` (never a bool for a number)."""
    value: Any = manifest
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) and kind is not bool:
        return None
    return value if isinstance(value, kind) else None


def _from_manifest(row: RunRow, manifest: dict[str, Any], age_s: float,
                   abandoned_after_s: float) -> None:
    row.game = _get(manifest, "game", kind=str) or "-"
    row.seed = _get(manifest, "seed", kind=int)
    target_itr = _get(manifest, "budget", "target_itr", kind=int)
    # the target's cum_steps carries the run's steps per iteration (its sampler shape)
    row.target = None if target_itr is None else steps_done(
        target_itr, _get(manifest, "budget", "target_cum_steps", kind=int))
    entries = _get(manifest, "snapshots", kind=list)
    steps = [steps_done(e["itr"], e["cum_steps"]) for e in entries or []
             if isinstance(e, dict) and _get(e, "itr", kind=int) is not None
             and _get(e, "cum_steps", kind=int) is not None]
    parent = (_get(manifest, "parent", "itr", kind=int),
              _get(manifest, "parent", "cum_steps", kind=int))
    row.reached = max(steps, default=steps_done(*parent) if None not in parent else 0)
    status = _get(manifest, "status", kind=str) or "?"
    if status == "running" and age_s > abandoned_after_s:
        status = "abandoned"
    row.status = {"stopped": STOPPED}.get(status, status)
    if status == FAILED:
        row.error = _get(manifest, "error", kind=str) or "no reason recorded"
    missing = [name for name, value in (
        ("game", row.game != "-"), ("seed", row.seed is not None),
        ("budget.target_itr", row.target is not None), ("snapshots", entries is not None),
        ("status", status != "?")) if not value]
    if missing:
        row.note(MANIFEST, f"no valid {', '.join(missing)}")


def read_row(run_dir: Path, now: float, abandoned_after_s: float) -> RunRow:
    """One run folder's row; whatever is damaged is noted in ``problems``, never raised."""
    row = RunRow(run_dir)
    try:
        rows = read_progress(run_dir)
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        row.note(PROGRESS, f"unreadable ({err})")
        rows = []
    try:
        found = newest_record(run_dir)
    except RunRecordError:
        found = None
    if found is None:  # an rlpyt run (or a damaged one of ours): read as lineage reads it
        run, _ = read_run(run_dir)
        row.status, row.reached = run.status, run.end_steps or None
        if (run_dir / MANIFEST).exists():
            row.note(MANIFEST, "unreadable (not JSON, or not a warmstart manifest)")
            row.status = DAMAGED
        row.train_curve, row.eval_curve = run.train_curve, run.eval_curve
        return row
    manifest, record = found
    age_s = now - record.stat().st_mtime
    row.updated_age_s = age_s
    _from_manifest(row, manifest, age_s, abandoned_after_s)
    row.train_curve = score_curve(rows, SCORE)
    row.eval_curve = score_curve(rows, EVAL_SCORE)
    return row


def _is_run(path: Path) -> bool:
    return path.is_dir() and ((path / MANIFEST).exists() or (path / PROGRESS).exists()
                              or bool(object_store.versions(path)))


def _status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _sort_key(row: RunRow) -> tuple:
    return (row.game == "-", row.game, -1 if row.seed is None else row.seed, row.name)


def scan(ckpt_dir: Path, abandoned_after_s: float, *, now: float | None = None) -> list[RunRow]:
    """Every run folder directly under ``ckpt_dir`` (our runs and rlpyt's), sorted by game,
    seed and name: a sweep's runs of one game stand together."""
    if not ckpt_dir.is_dir():
        raise SnapshotError(f"{ckpt_dir}: no such folder; give the checkpoint volume "
                            "(CKPT_DIR).")
    now = time.time() if now is None else now
    rows = []
    for path in ckpt_dir.iterdir():
        try:
            if _is_run(path):
                rows.append(read_row(path, now, abandoned_after_s))
        except OSError as err:  # a folder or file this user may not read
            rows.append(RunRow(path, problems=[f"{path.name}: unreadable ({err.strerror or err})"]))
    return sorted(rows, key=_sort_key)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{max(seconds, 0):.0f}s ago"


def _steps(row: RunRow) -> str:
    reached = "-" if row.reached is None else f"{row.reached:,}"
    if row.target is None:
        return reached
    share = f" ({100 * row.reached / row.target:.0f}%)" if row.reached and row.target else ""
    return f"{reached} / {row.target:,}{share}"


def _score(curve: list[tuple[int, float]]) -> str:
    return f"{curve[-1][1]:.1f}" if curve and math.isfinite(curve[-1][1]) else "-"


def table(rows: list[RunRow]) -> str:
    """The report's table and a one-line summary by status."""
    lines = [("run", "game", "seed", "steps done / target", "score", "eval score", "status",
              "manifest written")]
    for row in rows:
        lines.append((row.name, row.game, "-" if row.seed is None else str(row.seed),
                      _steps(row), _score(row.train_curve), _score(row.eval_curve), row.status,
                      _age(row.updated_age_s)))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    summary = f"{len(rows)} run(s): " + ", ".join(
        f"{counts[status]} {status}" for status in sorted(counts, key=_status_rank))
    return text_table(lines) + "\n" + summary


def plot_figure(rows: list[RunRow], title: str) -> Figure:
    """One panel per game with every run's training score curve; the legend names every run
    of its panel (one without finished games as such), and a short series gets a marker on
    each point, so a run with one log point shows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    by_game: dict[str, list[RunRow]] = {}
    for row in rows:
        by_game.setdefault(row.game, []).append(row)
    columns = min(3, max(1, len(by_game)))
    lines = max(1, math.ceil(len(by_game) / columns))
    figure = Figure(figsize=(5 * columns, 3.6 * lines), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    for i, (game, runs) in enumerate(sorted(by_game.items())):
        axes = figure.add_subplot(lines, columns, i + 1)
        for run in runs:
            if run.train_curve:
                marker = "o" if len(run.train_curve) <= SHORT_SERIES else None
                axes.plot(*zip(*run.train_curve, strict=True), linewidth=1, alpha=0.8,
                          marker=marker, markersize=3, label=run.name)
            else:  # in the legend too, so that no run of the panel goes unmentioned
                axes.plot([], [], linestyle="none", label=f"{run.name}: no finished games")
        if not any(run.train_curve for run in runs):
            axes.text(0.5, 0.5, "no finished games logged yet", transform=axes.transAxes,
                      ha="center", va="center", color="grey")
        axes.set_title(f"{game} ({len(runs)} run{'s' if len(runs) != 1 else ''})")
        axes.xaxis.set_major_formatter(EngFormatter())  # 250k, 1M: no overlapping digits
        axes.set_xlabel("env steps done")
        axes.set_ylabel("game score")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7 if len(runs) <= 12 else 5, loc="best",
                    ncol=math.ceil(len(runs) / LEGEND_ROWS))
    return figure


def render_plot(rows: list[RunRow], title: str) -> bytes:
    """The PNG bytes of ``plot_figure``."""
    buffer = io.BytesIO()
    plot_figure(rows, title).savefig(buffer, format="png")
    return buffer.getvalue()


def report(ckpt_dir: Path, plot: Path | None, abandoned_after_s: float,
           out: Callable[[str], None], err: Callable[[str], None]) -> int:
    """Print the table (and damaged files, one line each, to ``err``); draw ``plot``."""
    rows = scan(ckpt_dir, abandoned_after_s)
    if not rows:
        out(f"no run folders under {ckpt_dir}")
        return 0
    out(table(rows))
    for row in rows:
        if row.error is not None:
            out(f"{row.name} failed: {row.error}")
    for row in rows:
        for line in row.problems:
            err(f"warmstart report: {line}")
    if plot is not None:
        from .curve import write_png

        write_png(plot, lambda: render_plot(rows, f"score vs env steps: {ckpt_dir}"))
        out(f"plot: {plot}")
    return 0
