"""TensorBoard event files beside progress.csv, with the same scalars under the same names.

Each progress row becomes one scalar per column (tag = the column name, step = the row's
``Diagnostics/CumSteps``), written by tensorboard's own writer (``torch.utils.tensorboard``)
into the run folder, and flushed at once so a killed job loses nothing already in
progress.csv. Event files are append-only streams that TensorBoard reads while they grow, so
they are the one kind of file here not replaced atomically; a kill can cut the last record
short, which TensorBoard skips. A process's first row sets ``purge_step``: TensorBoard then
drops what an earlier process of the same run logged from that step on, so a resumed run shows
one curve, not two overlapping ones.

A volume without rename or append (object mode, ``checkpoint.object_store``) gets the event
files whole: the writer appends to a local copy in a private temporary folder, and each log
point copies it over the run folder's one in place (a kill mid-copy cuts the last records short,
as above).

TensorBoard is optional: without the ``tensorboard`` package the job says so in one log line
and goes on with progress.csv alone.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class ScalarLog:
    """Mirrors progress rows into TensorBoard event files in ``run_dir`` (when installed)."""

    def __init__(self, run_dir: Path, log: Callable[[str], None], *,
                 whole_files: bool = False) -> None:
        self.run_dir = run_dir
        self._local: Path | None = None
        if whole_files:  # object mode: written here, copied whole at each log point
            self._local = Path(tempfile.mkdtemp(prefix="warmstart-events-"))
            atexit.register(shutil.rmtree, self._local, ignore_errors=True)
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

            self._writer = SummaryWriter(str(self._local or self.run_dir), purge_step=step)
        for tag, value in row.items():
            self._writer.add_scalar(tag, float(value), global_step=step)
        self._writer.flush()
        if self._local is not None:
            from ..checkpoint import object_store

            for events in sorted(self._local.iterdir()):
                object_store.put(self.run_dir / events.name, events.read_bytes(), replace=True)
