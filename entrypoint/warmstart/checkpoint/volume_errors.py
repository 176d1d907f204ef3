"""What a failed volume call means, in one line: an outage to wait out, or a volume to fix.

The difference decides what a Job does next. An outage of a network volume (s3fs or gcsfuse
whose object store stopped answering, an NFS server rebooting) fails calls with EIO,
ENOTCONN or a timeout, and says nothing about the file asked for: a reader that took it as
damage would skip the newest snapshot for an older one, call a run's record damaged (exit 7,
never retried) or conclude that the volume cannot rename. Such errors are exit 10, which the
Jobs retry, and mid-run they are retried in-process (``volume_io``). A full, read-only or
forbidden volume stays exit 4: waiting does not fix it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import VolumeError, VolumeUnavailableError

TRANSIENT = frozenset({
    errno.EIO, errno.EAGAIN, errno.EINTR, errno.ENOTCONN, errno.ETIMEDOUT, errno.ECONNRESET,
    errno.ECONNABORTED, errno.ECONNREFUSED, errno.ESTALE, errno.EHOSTDOWN, errno.EHOSTUNREACH,
    errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET, errno.EREMOTEIO})
"""Errors of a volume that may answer again: a network mount's outage, a FUSE daemon that
lost its server. Not ENOSPC, EDQUOT, EACCES, EPERM, EROFS: waiting does not fix those."""


def outage(path: Path, err: OSError, doing: str) -> VolumeUnavailableError | None:
    """The exit-10 line for ``err`` met while ``doing`` ("reading", "writing", "probing")
    ``path``, when it is an outage's error; None when it says something about the file."""
    if err.errno not in TRANSIENT:
        return None
    concluded = "" if doing == "writing" else (
        ", not of the file: nothing was skipped or taken as damaged")
    return VolumeUnavailableError(
        f"{path}: the checkpoint volume failed {doing} it ({err.strerror or err}), an error of "
        f"a volume that may answer again{concluded}; retry once the volume answers.",
        errno=err.errno)


def raise_if_outage(path: Path, err: OSError, doing: str = "reading") -> None:
    """For a reader about to turn ``err`` into what it says of the file: stop if it is an
    outage's error instead (see ``outage``)."""
    found = outage(path, err, doing)
    if found is not None:
        raise found from None


def volume_error(path: Path, err: OSError) -> VolumeError:
    """One line that says what went wrong writing ``path`` and what to do about it."""
    found = outage(path, err, "writing")
    if found is not None:
        return found
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        if path.suffix == ".pkl":
            return VolumeError(f"{path}: no space left on the checkpoint volume "
                               f"({err.strerror}); free space or use a bigger volume; the "
                               "previous snapshot is intact.", errno=err.errno)
        return VolumeError(f"{path}: no space left ({err.strerror}); free space or write it "
                           f"elsewhere; nothing partial was left, an earlier {path.name} is "
                           "intact.", errno=err.errno)
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return VolumeError(
            f"{path}: cannot write ({err.strerror}); the checkpoint folder must be writable "
            f"by uid {os.getuid()} (gid {os.getgid()}).", errno=err.errno)
    return VolumeError(f"{path}: write failed ({err.strerror or err}).", errno=err.errno)
