"""TensorBoard event files beside progress.csv, with the same scalars under the same names.

Each progress row becomes one scalar per column (tag = the column name, step = the row's
``Diagnostics/CumSteps``), written by tensorboard's own writer (``torch.utils.tensorboard``).
A process's first row sets ``purge_step``: TensorBoard then drops what an earlier process of
the same run logged from that step on, so a resumed run shows one curve, not two overlapping
ones.

The writer appends to a local copy in a private temporary folder, never to the volume: its
own thread would otherwise write the run folder where no stall is said and no error retried
(an outage there printed that thread's traceback, and failed the next row). At each log point
the run replaces its event files whole with the local ones (``changed``), as it writes every
record: atomically, or in place on a volume without rename, through the volume's worker.

TensorBoard is optional: without the ``tensorboard`` package the job says so in one log line
and goes on with progress.csv alone.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any


class ScalarLog:
    """Mirrors progress rows into TensorBoard event files, written locally (when installed)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._local = Path(tempfile.mkdtemp(prefix="warmstart-events-"))
        atexit.register(shutil.rmtree, self._local, ignore_errors=True)
        self._sizes: dict[str, int] = {}  # event file -> its size when last handed out
        self.enabled = importlib.util.find_spec("tensorboard") is not None
        if not self.enabled:
            log("tensorboard is not installed: no event files (progress.csv has the same "
                "numbers); pip install the tensorboard pinned in docker/requirements.txt")
        self._writer: Any = None

    def add(self, row: Mapping[str, Any]) -> None:
        """Write one progress row; every numeric column becomes a scalar at its CumSteps."""
        if not self.enabled:
            return
        step = int(row["Diagnostics/CumSteps"])
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self._local), purge_step=step)
        for tag, value in row.items():
            self._writer.add_scalar(tag, float(value), global_step=step)
        self._writer.flush()

    def changed(self) -> Iterator[tuple[str, bytes]]:
        """The event files that grew since the last call, by name, whole: what the run
        folder's copies are replaced with."""
        for events in sorted(self._local.iterdir()):
            data = events.read_bytes()
            if self._sizes.get(events.name) != len(data):
                self._sizes[events.name] = len(data)
                yield events.name, data
