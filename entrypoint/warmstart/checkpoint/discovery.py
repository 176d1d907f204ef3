"""Find the snapshot to start from: the newest usable one under the checkpoint volume.

rlpyt's runs nest (``<prefix>/<date>/<name>/run_<id>/params.pkl``) and users copy them around,
so the whole tree is searched. "Newest" means most training: the optimizer's update count
first (Adam's ``step``: it keeps counting across rlpyt's warm starts, which restart ``itr`` and
``cum_steps`` at 0), then ``cum_steps``, then the file's mtime (useless once a volume was
copied, so the last resort). A file that cannot be read, or whose weights hold NaN or infinity
(a diverged run's: checked when the chosen file is loaded whole, not while ranking), is named
in the log and the next one is tried, unless strict mode asks to stop there. Given a game,
snapshots whose folder records another game are passed over, in one log line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import object_store, records
from . import snapshot as snap
from .manifest import read_manifest
from .volume_errors import raise_if_outage
from .volume_io import VOLUME

_NAMED = 3
"""Paths named in a log line before the rest are counted: one line stays one line."""


def candidates(root: Path) -> Iterator[Path]:
    """Every file under ``root`` named like an rlpyt snapshot, skipping hidden files and folders;
    in a run written in object mode, only those its manifest commits (``_committed``)."""
    VOLUME.note("list", root)  # during a start: a stall names the folder being walked
    for folder, subdirs, files in os.walk(root, onerror=_unless_outage):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        names = sorted(name for name in files if snap.SNAPSHOT_NAME.match(name))
        if any(object_store.VERSION.match(name) for name in files):
            names = _committed(Path(folder), names)
        for name in names:
            yield Path(folder) / name


def _unless_outage(err: OSError) -> None:
    """A folder that cannot be listed is passed over (not one of ours to read), unless the
    volume failed with an outage's error: then the newest snapshot may be in it, and the
    start stops (exit 10) rather than continue from an older one."""
    raise_if_outage(Path(err.filename or "."), err, "listing")


def _committed(folder: Path, names: list[str]) -> list[str]:
    """The snapshots an object-mode run's newest manifest vouches for (``committed``), its
    write-once itr_N.pkl rather than params.pkl, which is refreshed in place (a kill mid-write
    publishes a part of it). A file the newest holder's manifest does not vouch for is an
    interrupted write or a fenced-off late one of a stalled older holder."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("write_mode") != "object":
        return names
    listed = object_store.committed(folder, manifest)
    stages = [name for name in names if name in listed and name.startswith("itr_")]
    return stages or [name for name in names if name in listed]


@dataclass(frozen=True)
class _Candidate:
    path: Path
    counters: snap.Counters
    mtime: float

    @property
    def rank(self) -> tuple[int, int, float, str]:
        """Most training first; no optimizer state counts as no updates; the path breaks
        exact ties so that a copied volume gives the same choice every time."""
        return (self.counters.updates or 0, self.counters.cum_steps, self.mtime, str(self.path))

    def describe(self) -> str:
        updates = "no optimizer state" if self.counters.updates is None else (
            f"{self.counters.updates} updates")
        runner = ", AsyncRl" if self.counters.asynchronous is not None else ""
        return f"{self.path} ({updates}, cum_steps {self.counters.cum_steps}{runner})"


def _names(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_NAMED])
    return shown + (f" and {len(paths) - _NAMED} more" if len(paths) > _NAMED else "")


def _other_games_line(game: str, others: dict[str, list[Path]], any_left: bool) -> str:
    """One line naming the snapshots of other games; without any of ``game``, a hint that
    GAME may have been forgotten."""
    listed = "; ".join(f"{g}: {len(ps)} ({_names(ps)})" for g, ps in sorted(others.items()))
    if any_left:
        return f"considering only snapshots of GAME={game}; passed over other games' {listed}"
    hint = " or ".join(f"GAME={g}" for g in sorted(others))
    return (f"no snapshot of GAME={game} here, only of other games: {listed}; to continue one "
            f"of those, set {hint}")


def _choice_line(chosen: _Candidate, rest: list[_Candidate]) -> str:
    """Which snapshot was chosen and why, naming those passed over when it was not obvious:
    more cum_steps but fewer updates (a reset chain), or equal counters decided by time."""
    line = (f"newest of {len(rest) + 1} snapshots: {chosen.describe()}, ranked by optimizer "
            "updates, then cum_steps, then file time")
    more_steps = [c for c in rest if c.counters.cum_steps > chosen.counters.cum_steps]
    if more_steps:
        line += ("; passed over despite more cum_steps (rlpyt's warm start restarts cum_steps, "
                 f"not Adam's count): {', '.join(c.describe() for c in more_steps[:_NAMED])}")
    ties = [c for c in rest if c.rank[:2] == chosen.rank[:2]]
    if ties:
        by = "newer file time" if any(c.mtime != chosen.mtime for c in ties) else (
            "path order (same file times, as after a copy)")
        line += f"; same updates and cum_steps as {_names([c.path for c in ties])}, chosen by {by}"
    return line


def newest(paths: Iterable[Path], *, strict: bool, log: Callable[[str], None],
           game: str | None = None) -> snap.Snapshot | None:
    """Load the candidate with the most training that reads cleanly; None if no candidate.

    An unreadable file is skipped with a log line when an older readable one exists, so a
    snapshot cut short by a crash falls back to the previous good one. When every candidate is
    unreadable, or in strict mode, the first problem is raised: a volume of broken snapshots is
    never silently treated as a cold start. A file that would run code on load is never skipped.
    With ``game``, a snapshot whose folder records another game is not a candidate.
    """
    ranked: list[_Candidate] = []
    problems: list[snap.SnapshotError] = []
    others: dict[str, list[Path]] = {}
    folder_games: dict[Path, str | None] = {}

    def skip(err: snap.SnapshotError) -> None:
        if strict or isinstance(err, snap.UnsafeSnapshotError):
            raise err
        problems.append(err)
        log(f"skipping unusable snapshot: {err}")

    for path in paths:
        if game is not None:
            if path.parent not in folder_games:
                folder_games[path.parent] = records.recorded_game(path)
            recorded = folder_games[path.parent]
            if recorded is not None and recorded != game:
                others.setdefault(recorded, []).append(path)
                continue
        try:
            ranked.append(_Candidate(path, snap.read_training(path), path.stat().st_mtime))
        except snap.SnapshotError as err:
            skip(err)
    if game is not None and others:
        log(_other_games_line(game, others, any_left=bool(ranked)))
    ranked.sort(key=lambda c: c.rank, reverse=True)
    for i, candidate in enumerate(ranked):
        try:
            found = snap.read(candidate.path)
        except snap.SnapshotError as err:
            skip(err)
            continue
        if len(ranked) > i + 1:
            log(_choice_line(candidate, ranked[i + 1:]))
        return found
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
