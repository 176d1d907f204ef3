"""``learning_curve.png``: game score against env steps over a run's whole lineage.

Drawn at the end of a run (also one stopped by a signal) from the progress.csv of the run and
of every run it descends from (``lineage``): training games as lines (with a marker on each
point of a short series, so a demo's few points show), evaluations as dots, one
colour per run, a dotted line where each warm start begins. A fixed 1000x500 px image, drawn
with matplotlib's Agg canvas (no display needed) and written atomically. matplotlib is
optional: without it the log says so once and the run ends as usual.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..checkpoint import atomic
from ..errors import ConfigError, UserError
from .lineage import Run, lineage

if TYPE_CHECKING:  # matplotlib is optional: imported only where a curve is drawn
    from matplotlib.figure import Figure

FILE = "learning_curve.png"
WIDTH_PX, HEIGHT_PX, DPI = 1000, 500, 100
SHORT_SERIES = 50
"""Training series of at most this many log points get a marker on each point."""


def figure(chain: list[Run], title: str) -> Figure:
    """The curve for ``chain`` (oldest run first) as a matplotlib figure."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = colormaps["tab10"]
    for i, run in enumerate(chain):
        colour = colours(i % 10)
        if run.train_curve:
            # a line alone draws nothing for one point and hides a few: mark short series
            marker = "o" if len(run.train_curve) <= SHORT_SERIES else None
            axes.plot(*zip(*run.train_curve, strict=True), color=colour, linewidth=1.2,
                      marker=marker, markersize=4, label=f"{run.name}: training games")
        if run.eval_curve:
            axes.plot(*zip(*run.eval_curve, strict=True), color=colour, marker="o",
                      linestyle="none", label=f"{run.name}: evaluation (eps 0.001)")
        if run.parent is not None:
            axes.axvline(run.start_steps, color=colour, linestyle=":", linewidth=1.5,
                         label=f"warm start of {run.name} ({run.start_steps:,} steps)")
    if not any(run.train_curve or run.eval_curve for run in chain):
        axes.text(0.5, 0.5, "no finished games logged yet", transform=axes.transAxes,
                  ha="center", va="center", color="grey")
    axes.set_xlabel("env steps done")
    axes.set_ylabel("game score (mean per log point)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")
    return figure


def render(chain: list[Run], title: str) -> bytes:
    """The PNG bytes of the curve for ``chain`` (oldest run first)."""
    buffer = io.BytesIO()
    figure(chain, title).savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def names(chain: list[Run]) -> str:
    """``cold -> warm -> ...``: the runs of a lineage, oldest first."""
    return " -> ".join(run.name for run in chain)


def draw(chain: list[Run], path: Path) -> None:
    """Write the curve of ``chain`` to ``path`` atomically.

    ConfigError without matplotlib or without the folder; VolumeError when it cannot be written.
    """
    write_png(path, lambda: render(chain, f"score vs env steps: {names(chain)}"))


def write_png(path: Path, png: Callable[[], bytes]) -> None:
    """Write the figure ``png`` draws to ``path`` atomically, once matplotlib and the folder
    are known to be there (ConfigError otherwise)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("matplotlib is not installed: no plot (pip install the "
                          "matplotlib pinned in docker/requirements.txt)")
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent} is not a folder: cannot write {path.name} there")
    atomic.write_bytes(path, png())


def write_learning_curve(run_dir: Path, log: Callable[[str], None]) -> Path | None:
    """Draw the lineage's curve into ``run_dir`` at the end of a run.

    Any failure is logged, not raised: the run's snapshots and manifest are already final,
    the curve is a by-product that ``warmstart lineage --curve`` can draw again, and a parent
    folder this job cannot read must not turn a finished run into a failed one.
    """
    path = run_dir / FILE
    try:
        chain = lineage(run_dir)
        draw(chain, path)
    except (UserError, OSError, ValueError, KeyError) as err:
        log(f"learning curve not drawn: {err}")
        return None
    log(f"learning curve over {len(chain)} run(s) ({names(chain)}): {path}")
    return path
