"""Crash-safe file replacement: temp file in the same folder, fsync, rename, fsync the folder.

A reader (or a restarted job) sees either the old file or the new one, never a partial one.
Temp files are dot-files with a fixed marker, so discovery never mistakes them for data and a
later run can sweep the ones a killed process left behind. Each write takes a temp name of its
own (pid and a serial number): a retry after a failed write never reuses the failed one's name,
which a network volume's cache may still show as present after its unlink (s3fs answered such a
create with EEXIST).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .volume_errors import volume_error

TEMP_MARKER = ".tmp-"
_serial = itertools.count()


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}-{next(_serial)}")


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` through a file object; it replaces ``path`` only if the block completes.

    For files too big to build in memory first (a replay buffer): whatever goes wrong inside
    the block, or a kill, leaves the old file untouched and at most a hidden temp file.
    """
    temp = _temp_path(path)
    try:
        # a temp file a killed writer with this pid left (pid 1 in every container, counting
        # from the same serial) is junk; whatever it is (a link, a FIFO), a new file is made,
        # never written through it
        temp.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with open(os.open(temp, flags, 0o644), "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        fsync_dir(path.parent)
    except BaseException as err:
        try:
            temp.unlink()
        except OSError:
            pass
        if isinstance(err, OSError):
            raise volume_error(path, err) from None
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; on failure the old file is untouched."""
    with replacing(path) as handle:
        handle.write(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def sweep_temp_files(folder: Path) -> list[Path]:
    """Remove temp files a killed writer left in ``folder``; returns what was removed."""
    removed = []
    for path in folder.glob(f".*{TEMP_MARKER}*"):
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed
