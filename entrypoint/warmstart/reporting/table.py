"""Plain-text tables, as ``lineage`` and ``report`` print them: left-aligned columns two
spaces apart, no trailing blanks, so they read well in ``kubectl logs`` and diff cleanly."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` (the header first) as aligned columns."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
