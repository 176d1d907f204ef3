"""A run's ``progress.csv``: rlpyt's rows, one per log point, read back and checked.

A resumed run reads its rows back (the last evaluation, the step counts), so a row that is not
what the trainer wrote is found here, before the run writes anything.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from . import safe_read

PROGRESS = "progress.csv"


def read_progress(run_dir: Path, *, whole_rows: bool = False) -> list[dict[str, str]]:
    """The run's progress.csv rows; none before its first log point. A file that is not
    readable text raises OSError (``safe_read.UnreadableFile`` too), UnicodeDecodeError or
    csv.Error. ``whole_rows``: the file was rewritten in place (object mode), so a writer
    killed mid-write leaves a prefix of it: a last line without its newline is that torn
    row, and is dropped (the next log point writes the file whole again)."""
    try:
        text = safe_read.read_text(run_dir / PROGRESS, limit=safe_read.CSV_LIMIT)
    except FileNotFoundError:
        return []
    if whole_rows and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def rows_problem(rows: list[dict[str, Any]]) -> str | None:
    """What makes progress.csv rows unusable for a trainer resuming the run, if anything:
    every row needs its iteration and step count, and the numbers a resume reads must be
    numbers."""
    for i, row in enumerate(rows, start=2):
        if None in row:
            return f"line {i} has more fields than the header"
        for column in ("Diagnostics/Iteration", "Diagnostics/CumSteps",
                       "Diagnostics/TrajsInEval"):
            text = row.get(column)
            if column != "Diagnostics/TrajsInEval" or text:
                try:
                    if not math.isfinite(float(text)):
                        raise ValueError
                except (TypeError, ValueError):
                    return f"line {i}: {column} is {text!r:.30}, not a number"
    return None
