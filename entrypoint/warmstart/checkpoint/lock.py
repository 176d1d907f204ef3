"""One writer per run folder: an exclusive ``flock`` on a hidden file inside it.

Two trainers given the same ``RUN_NAME`` (a replacement pod that starts while the old one still
writes its final snapshot, or two `make train` in two terminals) would otherwise both resume the
run and silently overwrite each other's snapshots. The lock lives as long as the process: the
kernel drops it when the process exits or is killed, so a SIGKILL or an OOM kill leaves no stale
lock. The file holds the holder's host, pid and start time, for the message a waiting trainer
gives; a trainer writes them only once it commits to writing the run (``RunLock.claim``), so a
trainer that looks at a run and then starts another (its parent's) leaves the lock file as it
was. The lock file is opened as any file on the volume is (``safe_read``): a link, a FIFO or a
device under its name is a damaged run record, never written through. Its name starts with a
dot and matches neither a snapshot nor a temp file, so discovery never reads it and a sweep
never removes it.

On a volume without rename (object mode) a file is never reopened for writing in place except
by ``O_TRUNC``: the lock file is then opened read-only when it exists (``flock`` needs no write
access) and never written; the lease says who holds the run.

``flock`` holds only within one mount; across nodes the run's lease (``lease``) says who writes.
``acquire`` takes the flock; the lease follows at the claim or the first write, within the same
LOCK_WAIT, and ``RunLock.check`` says before each write whether this process still holds it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import RunLockedError, RunRecordError
from . import lease, safe_read
from .volume_errors import volume_error
from .volume_io import VOLUME

FILE = ".warmstart.lock"
POLL_S = 0.2
LIMIT = 64 * safe_read.KB
"""A lock file holds one line; anything bigger is not ours."""


class RunLock:
    """A held lock on one run folder; ``release`` gives it up before the process ends."""

    def __init__(self, folder: Path, fd: int, *, wait_s: float,
                 log: Callable[[str], None]) -> None:
        self.folder = folder
        self._fd: int | None = fd
        self._lease: lease.Lease | None = None
        self._lease_s = lease.lease_seconds(wait_s)
        self._wait_s = wait_s
        self._log = log
        self.in_place = False  # object mode (``use``)
        self._floor = 0
        self.contested = True  # another node may take this folder's lease at the same moment

    def use(self, *, in_place: bool, floor: int) -> None:
        """Take the lease with a holder number above ``floor`` (the highest the run's records
        carry: a lease file someone deleted to break a stuck lease does not restart the count,
        and readers order manifest versions by it); ``in_place``: write it without rename
        (object mode)."""
        self.in_place, self._floor = in_place, floor

    def _leased(self) -> lease.Lease:
        """The run's lease, taken at the first write or claim, waiting up to LOCK_WAIT for a
        holder on another mount (the flock's wait was for one on this mount): a trainer that
        only looks at a run, or finds it is not its own, leaves no lease behind."""
        if self._lease is None:
            self._lease = lease.acquire(
                self.folder, wait_s=self._wait_s,
                lease_s=self._lease_s, log=self._log, in_place=self.in_place,
                floor=self._floor, settle=self.contested)
        return self._lease

    @property
    def holder(self) -> int:
        """This process's holder number: higher than every earlier writer's of the run."""
        return self._leased().number

    def lost(self) -> str | None:
        """Why this process may no longer write the run (its lease), or None."""
        return None if self._lease is None else self._lease.lost()

    def left(self) -> float:
        """Seconds this process may still write the run on its lease (unlimited before the
        lease is taken: the first write takes it)."""
        return float("inf") if self._lease is None else self._lease.left()

    def check(self) -> None:
        """Raise RunLockedError (exit 5) unless this process holds the run's lease (taking it
        if it has not yet) and has kept it."""
        self._leased().check()

    def claim(self) -> None:
        """Write this process's host, pid and start time into the lock file, for the message
        a trainer waiting for this one gives: only a trainer that writes the run claims it.
        The run's lease is taken first (``lease``): other mounts do not see the flock."""
        if self._fd is None:
            return
        self._leased()
        if self.in_place:
            return
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"host {socket.gethostname()}, pid {os.getpid()}, since "
                      f"{since}\n".encode(), 0)
        except OSError as err:
            raise volume_error(self.folder / FILE, err) from None

    def release(self) -> None:
        if self._lease is not None:
            self._lease.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it; "another trainer" while it is being written."""
    text = os.pread(fd, 512, 0).decode(errors="replace").strip()
    return text or "another trainer"


def _open(path: Path, flags: int) -> int:
    """The lock file, opened without following a link or blocking, and only if regular."""
    try:
        return safe_read.open_fd(path, limit=LIMIT, flags=flags | os.O_NOFOLLOW)
    except safe_read.UnreadableFile as err:
        raise RunRecordError(
            f"{path}: not a lock file ({err.why}); a trainer never writes into a run it cannot "
            f"read: delete it, or move the folder {path.parent} aside, or use another "
            "RUN_NAME.") from None


def _take(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def acquire(folder: Path, *, wait_s: float, log: Callable[[str], None]) -> RunLock:
    """Lock ``folder`` for this process, waiting up to ``wait_s`` seconds for a holder to end.

    Raises RunLockedError (exit 5) naming the holder when it still holds the lock then,
    RunRecordError when the lock file is not a regular file, and VolumeError when it cannot
    be created. The lock file is not written here: see ``RunLock.claim``.
    """
    path = folder / FILE
    try:
        fd = _open(path, os.O_RDWR | os.O_CREAT)
    except RunRecordError:
        raise
    except PermissionError as err:  # an object store reopens a file only to replace it
        try:
            fd = _open(path, os.O_RDONLY)
        except OSError:
            raise volume_error(path, err) from None
    except OSError as err:
        raise volume_error(path, err) from None
    deadline = time.monotonic() + wait_s
    try:
        if not _take(fd):
            holder = _holder(fd)
            log(f"run folder {folder} is held by {holder}; waiting up to {wait_s:g}s for it "
                "to end (LOCK_WAIT)")
            while not _take(fd):
                if time.monotonic() >= deadline:
                    raise RunLockedError(
                        f"{folder} is held by {_holder(fd)}, still running after "
                        f"{wait_s:g}s (LOCK_WAIT); two trainers must not write one run: "
                        "stop the other one, give this job another RUN_NAME, or retry later.")
                VOLUME.raise_if_stopping()
                with VOLUME.idle():
                    time.sleep(POLL_S)
    except BaseException:
        os.close(fd)
        raise
    return RunLock(folder, fd, wait_s=wait_s, log=log)


def held(folder: Path) -> bool:
    """Whether a live process holds ``folder``'s lock or lease (an unlocked, missing or damaged
    file: no; taking the lock then says what is wrong with it)."""
    if lease.live(folder):
        return True
    try:
        fd = _open(folder / FILE, os.O_RDONLY)
    except (OSError, RunRecordError):
        return False
    try:
        if _take(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)
