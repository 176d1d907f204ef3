"""Find the snapshot to start from: the newest usable one under the checkpoint volume.

rlpyt's runs nest (``<prefix>/<date>/<name>/run_<id>/params.pkl``) and users copy them around,
so the whole tree is searched. "Newest" means most training (``cum_steps``), with the file's
mtime breaking ties; a file that cannot be read is named in the log and the next one is tried,
unless strict mode asks to stop there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from . import snapshot as snap


def candidates(root: Path) -> Iterator[Path]:
    """Every file under ``root`` named like an rlpyt snapshot, skipping hidden files and folders."""
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if snap.SNAPSHOT_NAME.match(name):
                yield Path(folder) / name


def newest(paths: Iterator[Path] | list[Path], *, strict: bool,
           log: Callable[[str], None]) -> snap.Snapshot | None:
    """Load the candidate with the largest ``cum_steps`` that reads cleanly; None if no candidate.

    An unreadable file is skipped with a log line when an older readable one exists, so a
    snapshot cut short by a crash falls back to the previous good one. When every candidate is
    unreadable, or in strict mode, the first problem is raised: a volume of broken snapshots is
    never silently treated as a cold start. A file that would run code on load is never skipped.
    """
    ranked: list[tuple[int, float, Path]] = []
    problems: list[snap.SnapshotError] = []

    def skip(err: snap.SnapshotError) -> None:
        if strict or isinstance(err, snap.UnsafeSnapshotError):
            raise err
        problems.append(err)
        log(f"skipping unusable snapshot: {err}")

    for path in paths:
        try:
            _, cum_steps = snap.read_counters(path)
            ranked.append((cum_steps, path.stat().st_mtime, path))
        except snap.SnapshotError as err:
            skip(err)
    for _, _, path in sorted(ranked, reverse=True):
        try:
            return snap.read(path)
        except snap.SnapshotError as err:
            skip(err)
    if problems:
        raise problems[0]
    return None


def snapshot_at(path: Path, *, strict: bool, log: Callable[[str], None]) -> snap.Snapshot:
    """What a user means by a PATH argument: the file itself, or a folder's newest usable
    snapshot, chosen as training chooses its start point."""
    if not path.is_dir():
        return snap.read(path)
    found = newest(candidates(path), strict=strict, log=log)
    if found is None:
        raise snap.SnapshotError(f"{path}: no params.pkl or itr_N.pkl under this folder.")
    return found
