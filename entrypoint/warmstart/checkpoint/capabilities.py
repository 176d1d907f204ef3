"""What the checkpoint volume can do, found by trying it, and the write mode that follows.

A FUSE mount of a bucket looks like a folder but may lack rename (Mountpoint for S3, gcsfuse
without its rename settings), append, overwrite or delete, and says so only when a write
fails, in the middle of a run. So before a start writes its run folder, ``probe`` tries each
on one hidden file of its own, ``.warmstart-probe-<host>-<pid>-<random>`` under CKPT_DIR
(unique: two trainers probing one volume never share it), removed after where the volume can
delete. ``choose`` then picks ``rename`` (temp file + rename, local disk, NFS, s3fs, gcsfuse)
or ``object`` (write-once names and manifest versions, ``object_store``), or refuses the
volume in one line naming what is missing and the mount option that adds it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import VolumeError, VolumeUnavailableError
from .volume_errors import raise_if_outage, volume_error
from .volume_io import VOLUME

PREFIX = ".warmstart-probe-"


@dataclass(frozen=True)
class Capabilities:
    """Each operation the volume refused, with the reason it gave; None: it works."""

    overwrite: str | None
    append: str | None
    rename: str | None
    delete: str | None

    def describe(self) -> str:
        return ", ".join(f"{op} {'works' if why is None else f'fails ({why})'}" for op, why in (
            ("rename", self.rename), ("overwrite", self.overwrite), ("append", self.append),
            ("delete", self.delete)))


def _why(path: Path, err: OSError) -> str:
    """Why the volume refused an operation on the probe file; an outage's error (EIO, a
    timeout) says nothing about what the volume supports, and stops the start (exit 10)
    rather than pick a write mode from it."""
    raise_if_outage(path, err, "probing")
    return err.strerror or type(err).__name__


def _put(path: Path, data: bytes, flags: int) -> str | None:
    """Write ``data`` through ``flags`` and read the file back; why not, or None."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | flags, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return None
    except OSError as err:
        return _why(path, err)


def _reads(path: Path, expected: bytes) -> str | None:
    try:
        found = path.read_bytes()
    except OSError as err:
        return _why(path, err)
    return None if found == expected else "the file reads back other bytes"


def probe(ckpt_dir: Path) -> Capabilities:
    """Try create, read back, overwrite (``O_TRUNC``), append, rename and delete on a hidden
    file of this process's own; VolumeError when the volume cannot even create a file, and
    VolumeUnavailableError (exit 10) when it fails with an outage's error on the way (the
    file is then removed where it can be)."""
    path = ckpt_dir / f"{PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    VOLUME.note("probe", path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
    except OSError as err:
        raise volume_error(ckpt_dir, err) from None
    try:
        return _try_each(path)
    except VolumeUnavailableError:
        for left in (path, path.with_name(path.name + "-renamed")):
            with contextlib.suppress(OSError):
                left.unlink()
        raise


def _try_each(path: Path) -> Capabilities:
    """``probe``'s trials on its new file ``path`` holding b"1"; the file is gone after
    where the volume can delete."""
    problem = _reads(path, b"1")
    if problem is not None:
        raise VolumeError(f"CKPT_DIR={path.parent}: a file written there ({path.name}) "
                          f"{problem}; check the mount.")
    overwrite = _put(path, b"2", os.O_TRUNC) or _reads(path, b"2")
    append = _put(path, b"3", os.O_APPEND) or _reads(path, (b"1" if overwrite else b"2") + b"3")
    renamed = path.with_name(path.name + "-renamed")
    try:
        os.rename(path, renamed)
        rename, path = None, renamed
    except OSError as err:
        rename = _why(path, err)
    try:
        path.unlink()
        delete = None
    except OSError as err:
        delete = _why(path, err)
    return Capabilities(overwrite=overwrite, append=append, rename=rename, delete=delete)


def choose(ckpt_dir: Path, wanted: str, found: Capabilities) -> str:
    """The write mode for ``wanted`` (WRITE_MODE) on a volume that can do ``found``; one
    VolumeError line naming the missing operation and the mount option otherwise."""
    if wanted in ("auto", "rename") and found.rename is None:
        return "rename"
    if wanted in ("auto", "object") and found.overwrite is None:
        return "object"
    options = ("Mountpoint for S3: mount with --allow-overwrite --allow-delete; gcsfuse: "
               "enable rename (a bucket with hierarchical namespace, or "
               "--rename-dir-limit); see docs/volumes.md")
    if wanted == "rename":
        return _refuse(ckpt_dir, f"WRITE_MODE=rename but this volume cannot rename a file "
                       f"({found.rename}); set WRITE_MODE=auto, or {options}")
    if wanted == "object":
        return _refuse(ckpt_dir, f"WRITE_MODE=object but this volume cannot replace a file "
                       f"opened with O_TRUNC ({found.overwrite}); {options}")
    return _refuse(ckpt_dir, f"this volume can neither rename a file ({found.rename}) nor "
                   f"replace one opened with O_TRUNC ({found.overwrite}), and a run needs "
                   f"one of them to replace its snapshots safely; {options}")


def _refuse(ckpt_dir: Path, why: str) -> str:
    raise VolumeError(f"CKPT_DIR={ckpt_dir}: {why}.")


def write_mode(ckpt_dir: Path, wanted: str, log: Callable[[str], None]) -> str:
    """Probe the volume and pick the write mode, in one log line (the refusal: VolumeError)."""
    found = probe(ckpt_dir)
    mode = choose(ckpt_dir, wanted, found)
    log(f"checkpoint volume {ckpt_dir}: {found.describe()}: write mode {mode}"
        + (" (no rename: write-once snapshots and manifest versions, docs/volumes.md)"
           if mode == "object" else ""))
    return mode
