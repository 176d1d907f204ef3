"""Object mode: how a run is written on a volume that cannot rename (Mountpoint for S3).

Such a volume replaces a file only by opening it with ``O_TRUNC``, and publishes what was
written when the file is closed, a writer killed mid-write included: overwriting the only good
copy of anything would lose it to a kill. So in object mode nothing the run needs is ever
overwritten in place:

- each snapshot goes first to a write-once ``itr_N.pkl`` (``O_EXCL``: closed is published);
- a manifest *version* written after it, ``manifest.v<holder>-<seq>.json``, names its file,
  sha256, itr, cum_steps and the writer's holder number: the commit record. Versions are
  write-once too and carry the sha256 of their own content, so the newest valid one wins and
  a torn one is passed over, never a damaged record (exit 7);
- with RESUME_STATE=full, the snapshot's ``resume-itr_N.npz`` is written before all of this,
  in sequence under its own name (``writing``), and the versions list it with its size: a
  part a killed writer published is never listed, and never read (``resume_state.find``);
- ``params.pkl`` (rlpyt's name, for the user's tooling) is refreshed with ``O_TRUNC`` only once
  an intact committed ``itr_N.pkl`` exists, and ``progress.csv`` is rewritten whole at each log
  point (a torn one is read up to its last whole row, ``rows.read_progress``).

Versions order by holder number first: a late write from a stalled old holder (a lower number)
never wins over the run's newest holder. Older versions are deleted where the volume allows it.
Rename mode writes versions too, before each ``manifest.json``, for that ordering alone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import safe_read
from .volume_errors import raise_if_outage, volume_error

VERSION = re.compile(r"^manifest\.v(\d+)-(\d+)\.json$")
CHECKSUM = "record_sha256"
VERSIONS_KEPT = 2
"""Manifest versions kept where the volume can delete: the newest, and the one before it."""

_NO_DELETE = (errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EROFS, errno.EOPNOTSUPP)


class _Appending(io.RawIOBase):
    """A file opened for writing that says it cannot seek: an object store's upload only
    appends, and zipfile, told so, writes each member's sizes after its data instead of going
    back to its header."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.write(self._fd, view[done:])
        return done

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)  # an object store publishes here: its error is the write's
            finally:
                super().close()


@contextlib.contextmanager
def writing(path: Path, *, replace: bool) -> Iterator[io.RawIOBase]:
    """Write ``path`` in sequence through a file object: a new file (``O_EXCL``), or with
    ``replace`` one opened with ``O_TRUNC`` (the only replacement an object store has). Closing
    publishes it, and so does a failed or killed write, with what it had written: a reader
    trusts it only once a manifest version lists it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if replace else os.O_EXCL)
    try:
        with _Appending(os.open(path, flags, 0o644)) as handle:  # unbuffered: zipfile's
            yield handle  # writes are its compressor's blocks
    except OSError as err:
        raise volume_error(path, err) from None


def put(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``path`` whole (``writing``)."""
    with writing(path, replace=replace) as handle:
        handle.write(data)


def holds(path: Path, sha256: str) -> bool:
    """Whether ``path`` is a regular file with exactly these bytes (a write that landed)."""
    try:
        data = safe_read.read_bytes(path, limit=safe_read.SNAPSHOT_LIMIT, flags=os.O_NOFOLLOW)
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == sha256


def committed(folder: Path, manifest: dict[str, Any]) -> set[str]:
    """The snapshot files an object-mode manifest vouches for: those it lists, and a
    write-once file of the write in progress that landed whole (the next start records it)."""
    listed = {e["file"] for e in manifest["snapshots"]}
    writing = manifest.get("writing")
    if writing is not None:
        listed |= {name for name in writing["files"] if name.startswith("itr_")
                   and holds(folder / name, writing["sha256"])}
    return listed


def version_name(holder: int, seq: int) -> str:
    return f"manifest.v{holder}-{seq}.json"


def versions(folder: Path) -> list[tuple[int, int, Path]]:
    """The folder's manifest versions as (holder, seq, path), newest first."""
    try:
        names = os.listdir(folder)
    except OSError as err:  # no folder, no versions; an outage is not "none"
        raise_if_outage(folder, err, "listing")
        return []
    found = [(int(m.group(1)), int(m.group(2)), folder / name)
             for name in names if (m := VERSION.match(name))]
    return sorted(found, reverse=True)


def _digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` as a new version named by its holder and ``version``; returns it."""
    path = folder / version_name(manifest["holder"], manifest["version"])
    record = manifest | {CHECKSUM: _digest(manifest)}
    # a version is write-once, but a retry after an error at close finds its own first try
    put(path, (json.dumps(record, indent=2) + "\n").encode(), replace=os.path.lexists(path))
    return path


def _whole(holder: int, seq: int, path: Path,
           problem: Callable[[Any], str | None]) -> dict[str, Any] | None:
    """The version at ``path`` when it is whole (its checksum matches), names the holder and
    sequence its file name does and holds what a trainer writes (``problem`` says nothing)."""
    try:
        record = safe_read.read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    claimed = record.pop(CHECKSUM, None)
    if (claimed != _digest(record) or record.get("holder") != holder
            or record.get("version") != seq or problem(record) is not None):
        return None
    return record


def newest_manifest(folder: Path, problem: Callable[[Any], str | None]
                    ) -> tuple[dict[str, Any], Path] | None:
    """The newest whole manifest version with its path; None when there is none. A torn
    version (a writer killed mid-write: the store published a prefix) is passed over."""
    for holder, seq, path in versions(folder):
        record = _whole(holder, seq, path, problem)
        if record is not None:
            return record, path
    return None


def ever_listed(folder: Path, problem: Callable[[Any], str | None]) -> set[str]:
    """Every snapshot file a whole version of any holder lists or was writing: the run's own,
    a stalled old holder's late writes included (fenced off, but never another lineage's)."""
    names: set[str] = set()
    for holder, seq, path in versions(folder):
        record = _whole(holder, seq, path, problem)
        if record is not None:
            names |= {e["file"] for e in record["snapshots"]}
            names |= set((record.get("writing") or {}).get("files") or [])
    return names


class Deleter:
    """Deletes what object mode no longer needs; on a volume without delete (Mountpoint
    without --allow-delete) says so once and keeps the files: never an error."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self.refused: str | None = None

    def delete(self, path: Path) -> bool:
        """Delete ``path``; False when the volume does not allow it."""
        if self.refused is not None:
            return False
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            if err.errno not in _NO_DELETE:
                raise volume_error(path, err) from None
            self.refused = err.strerror or str(err)
            self._log(f"{path.parent}: this volume does not delete files ({self.refused}); "
                      "what the run would delete is kept (older manifest versions and itr_N.pkl,"
                      " snapshots past KEEP_SNAPSHOTS; Mountpoint for S3: --allow-delete)")
            return False
        return True

    def old_versions(self, folder: Path, newest: Path, *, holders_last: bool) -> None:
        """Delete the manifest versions before ``newest`` but the ``VERSIONS_KEPT`` newest and,
        with ``holders_last`` (object mode), each older holder's last one: what it lists stays
        known as the run's own, so a late write of a stalled holder is never taken for another
        lineage's file (exit 7). In rename mode such a late file is vouched for by the
        manifest's ``interrupted`` entry instead."""
        found = versions(folder)
        names = [p for _, _, p in found]
        if newest not in names:
            return
        last_of: dict[int, Path] = {}
        for holder, _, path in found if holders_last else ():
            last_of.setdefault(holder, path)
        for path in names[names.index(newest):][VERSIONS_KEPT:]:
            if path not in last_of.values() and not self.delete(path):
                return


def save_snapshot(run: Any, files: list[str], data: bytes, write: dict[str, Any]) -> None:
    """Write one snapshot of ``run`` (a RunDir) in object mode, never over its only good copy.

    1. a manifest version names the write-once ``itr_N.pkl`` being written (``writing``);
    2. ``itr_N.pkl`` is written (``O_EXCL``; over an earlier uncommitted one, ``O_TRUNC``);
    3. the commit: a version lists it (file, sha256, itr, cum_steps, holder), and names the
       copies SNAPSHOT_MODE asks for (``params.pkl``) as being written;
    4. the copies are replaced in place, then a version lists them, and drops the stage files
       of earlier snapshots that SNAPSHOT_MODE did not ask for (deleted where it can).
    A kill at any step leaves the newest committed ``itr_N.pkl`` intact, and the next start
    settles the write as in rename mode (``RunDir._settle_writing``)."""
    stage = f"itr_{write['itr']}.pkl"
    entry = {k: write[k] for k in ("itr", "cum_steps", "sha256", "holder", "resume_state",
                                   "resume_state_bytes") if k in write}
    listed = {e["file"]: e for e in run.manifest["snapshots"]}
    run._on_volume("check", run.path / stage, lambda: run._check_own(stage))
    staged = {"stage": True} if stage not in files else {}  # dropped once a newer one is in
    if listed.get(stage, {}).get("sha256") != write["sha256"]:
        run.manifest["writing"] = write | {"files": [stage]} | staged
        run._write_manifest()
        run._lock.check()
        # replace: an earlier uncommitted one, or this write's own try before a retry
        run._on_volume("write", run.path / stage, lambda: put(
            run.path / stage, data, replace=os.path.lexists(run.path / stage)))
        run._on_volume("stat", run.path / stage, lambda: run.wrote(stage))
    entries = [e for e in run.manifest["snapshots"] if e["file"] != stage]
    run.manifest["snapshots"] = entries + [
        {"file": stage, "written": write["started"]} | entry | staged]
    copies = [name for name in files if name != stage]
    run.manifest.pop("writing", None)
    if copies:
        run.manifest["writing"] = write | {"files": copies}
    run._write_manifest()
    if not copies:
        return
    for name in copies:
        run._lock.check()
        run._on_volume("write", run.path / name,
                       lambda name=name: put(run.path / name, data, replace=True))
        run._on_volume("stat", run.path / name, lambda name=name: run.wrote(name))
    del run.manifest["writing"]
    dropped = {e["file"] for e in run.manifest["snapshots"]
               if e.get("stage") and e["file"] != stage and run.path / e["file"] != run.protected
               and run._on_volume("delete", run.path / e["file"],
                                  lambda e=e: run._deleter.delete(run.path / e["file"]))}
    run.manifest["snapshots"] = [e for e in run.manifest["snapshots"]
                                 if e["file"] not in copies and e["file"] not in dropped] + [
        {"file": name, "written": write["started"]} | entry for name in copies]
    run._write_manifest()

