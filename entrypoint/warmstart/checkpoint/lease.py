"""One writer per run across nodes: a lease file in the run folder that every mount sees.

``flock`` (``lock``) is enforced only within one mount: two nodes mounting one network volume
(NFS, gcsfuse, s3fs) each get it. So a trainer also takes the run's lease, ``.warmstart.lease``:
its holder number, host, boot id, pid, since when, and until when (wall clock) it holds the run.
A holder renews it every ``lease_s / 6`` seconds from a thread. Another trainer that finds it
live waits up to LOCK_WAIT and then exits 5 naming the holder; one that finds it released,
expired, or left by a dead process on its own host and boot (a restarted container: the pid is
gone, or is its own) takes it at once, with the next holder number.

Through FUSE there is no compare-and-swap, so a lease alone cannot stop a late write from an
old holder. A holder therefore stops itself (exit 5, one line) before any write once it has not
renewed for half the lease (a stall, a volume that does not answer, a paused VM) or finds a
higher holder number in the file; and it puts its number into what it writes (the manifest and
each snapshot entry). Readers never take or touch the lease (``inspect`` shows it).

On a volume without rename (object mode, ``object_store``) the lease file is replaced in place
(``O_TRUNC``), so a writer killed mid-write can leave it torn. A torn lease is read as an unknown
holder: waited for, and taken over once the file has gone unrewritten for a whole lease time (a
live holder rewrites it six times meanwhile), with a number above every one the run's records
carry.

Without compare-and-swap two trainers on two nodes can also find the lease free at the same
moment and both write their own. So a taker waits after its write (``settle``: twice what its
own read and write took, at least ``SETTLE_MIN_S``) and reads the file again: of two takers
whose writes land within that time of each other, only the last one's is there, and the other
goes back to waiting (Fischer's mutual exclusion; it holds while a write lands within the wait,
which a stalled volume can break: then the loser stops itself at its first renewal, before its
next write). A ``run_N`` folder made by this process alone skips the wait.

The lease time is half of LOCK_WAIT and at least ``MIN_LEASE_S``: 90 s by default, above
gcsfuse's 60 s attribute cache, and well under the 180 s a second trainer waits.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import RunLockedError, RunRecordError, UserError, VolumeError
from . import atomic, object_store, safe_read
from .volume_io import VOLUME

FILE = ".warmstart.lease"
MIN_LEASE_S = 30.0
POLL_S = 0.5
SETTLE_MIN_S = 1.0
"""The shortest wait after writing a lease before reading it again (``acquire``)."""
RENEWALS_PER_LEASE = 6


def lease_seconds(lock_wait: float) -> float:
    """How long a holder's lease lasts without renewal: half of LOCK_WAIT, at least 30 s."""
    return max(MIN_LEASE_S, lock_wait / 2)


def boot_id() -> str:
    """This machine's boot: a pid means the same process only within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _uptime() -> float:
    """Seconds on a clock that counts a stall, a stopped process and a suspended machine."""
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class Holder:
    """What the lease file says: who holds the run, and until when."""

    number: int
    host: str
    boot: str
    pid: int
    since: str
    expires: float  # seconds since the epoch
    lease_s: float
    released: bool = False

    def describe(self) -> str:
        return (f"holder {self.number} (host {self.host}, pid {self.pid}, since {self.since}, "
                f"lease until {_iso(self.expires)})")

    def same(self, other: Holder) -> bool:
        return (self.number, self.host, self.boot, self.pid) == (
            other.number, other.host, other.boot, other.pid)

    def dead_here(self) -> bool:
        """Left by a process of this host and boot that is gone (or whose pid is ours: a
        restarted container numbers its processes from 1 again)."""
        if self.host != socket.gethostname() or self.boot != boot_id():
            return False
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def live(self) -> bool:
        return not self.released and time.time() < self.expires and not self.dead_here()


_FIELDS = {"number": int, "host": str, "boot": str, "pid": int, "since": str,
           "expires": (int, float), "lease_s": (int, float), "released": bool}


def read(folder: Path) -> Holder | None:
    """The run's lease as its file says, None without one; RunRecordError when the file is not
    a lease this trainer wrote (the message says how to break it), VolumeError when the volume
    could not be read (an outage: nothing is known about the lease)."""
    path = folder / FILE
    try:
        data = safe_read.read_json(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
    except ValueError as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
    else:
        if isinstance(data, dict) and all(
                isinstance(data.get(k), kind) and not (isinstance(data.get(k), bool)
                                                       and kind is not bool)
                for k, kind in _FIELDS.items()):
            return Holder(**{k: data[k] for k in _FIELDS})
        problem = "not the fields a lease holds"
    raise RunRecordError(
        f"{path}: not a lease file ({problem:.80}); delete it once no trainer writes "
        f"{folder} (docs/volumes.md, breaking a stuck lease), or use another RUN_NAME.")


def shown(folder: Path) -> str:
    """The lease for a reader (``inspect``): who holds the run and until when; never raises."""
    try:
        holder = read(folder)
    except (RunRecordError, VolumeError) as err:
        return str(err)
    if holder is None:
        return "none (no trainer has written this folder since leases were kept)"
    state = ("released" if holder.released else "live" if holder.live() else
             "expired, or its process is gone")
    return f"{holder.describe()}: {state}"


def _write(folder: Path, holder: Holder, *, in_place: bool) -> None:
    text = json.dumps(asdict(holder), indent=1) + "\n"
    if in_place:  # object mode: no rename
        object_store.put(folder / FILE, text.encode(), replace=True)
    else:
        atomic.write_text(folder / FILE, text)


class Lease:
    """A held lease, renewed from a thread until ``release``; ``check`` before every write."""

    def __init__(self, folder: Path, holder: Holder, taken: float, *, in_place: bool) -> None:
        self.folder = folder
        self._in_place = in_place
        self.holder = holder
        self._renewed = taken  # _uptime() before the lease was written
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                         name="warmstart-lease")
        self._thread.start()
        atexit.register(self.release)  # an exit after a final snapshot (143, 130, 0) hands on

    @property
    def number(self) -> int:
        return self.holder.number

    def _renew_once(self) -> None:
        try:
            now = read(self.folder)
        except (VolumeError, RunRecordError):
            # unreadable, or read short (s3fs gives an empty file while its server is down):
            # not renewed this time, never rewritten over; if it lasts, ``lost`` stops this
            # holder once half its lease passed unrenewed
            return
        if now is not None and not now.same(self.holder):
            self._lost = f"{now.describe()} took the run over"
            return
        # counted from before the write: a write that stalls must not lengthen the lease
        # this process believes it has beyond the expiry the others read
        began = _uptime()
        renewed = replace(self.holder, expires=time.time() + self.holder.lease_s)
        try:
            _write(self.folder, renewed, in_place=self._in_place)
        except Exception:  # noqa: BLE001  (a volume error: retried; a stall shows in check)
            return
        self.holder, self._renewed = renewed, began

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.holder.lease_s / RENEWALS_PER_LEASE):
            if self.lost() is None:  # a stall is found here too: never renewed over
                self._renew_once()

    def lost(self) -> str | None:
        """Why this process may no longer write the run, or None while it may."""
        if self._lost is None:
            quiet = _uptime() - self._renewed
            if quiet > self.holder.lease_s / 2:
                self._lost = (f"its lease was not renewed for {quiet:.0f}s of its "
                              f"{self.holder.lease_s:g}s (a stall, or a volume that does not "
                              "answer)")
        return self._lost

    def left(self) -> float:
        """Seconds this process may still write before ``lost`` says it may not (0 once it
        has): how long a write failing mid-run may be retried."""
        if self.lost() is not None:
            return 0.0
        return self.holder.lease_s / 2 - (_uptime() - self._renewed)

    def check(self) -> None:
        """Raise RunLockedError (exit 5) unless this process still holds the run."""
        why = self.lost()
        if why is not None:
            raise RunLockedError(
                f"{self.folder}: this trainer ({self.holder.describe()}) stopped writing the run: "
                f"{why}; another trainer may hold it now. Retry once it is done (docs/volumes.md).")

    def release(self) -> None:
        """Stop renewing; mark the lease released (when it is still ours) so the next trainer
        takes it at once, keeping its holder number for the next one to count on."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        if self.lost() is not None:
            return
        # best effort: a lease that cannot be marked released expires anyway
        with contextlib.suppress(OSError, UserError):
            if (now := read(self.folder)) is not None and now.same(self.holder):
                _write(self.folder, replace(self.holder, released=True, expires=time.time()),
                       in_place=self._in_place)


def _torn(folder: Path, floor: int, lease_s: float) -> Holder:
    """A torn lease file as a holder: unknown, live until the file has gone unrewritten for a
    whole lease time (its time on the volume: counted across restarts, whatever LOCK_WAIT is)."""
    try:
        written = os.stat(folder / FILE).st_mtime
    except OSError:
        written = 0.0
    return Holder(number=floor, host="unknown (a torn lease file)", boot="", pid=0,
                  since=_iso(written), expires=written + lease_s, lease_s=lease_s)


def _settled(folder: Path, mine: Holder, took: float) -> bool:
    """After writing ``mine``: wait twice ``took`` (what reading and writing the lease took;
    at least ``SETTLE_MIN_S``), then whether the file still holds ``mine`` (module docstring)."""
    VOLUME.raise_if_stopping()
    with VOLUME.idle():
        time.sleep(max(SETTLE_MIN_S, 2 * took))
    now = read(folder)
    return now is not None and now.same(mine)


def acquire(folder: Path, *, wait_s: float, lease_s: float, log: Callable[[str], None],
            in_place: bool = False, floor: int = 0, settle: bool = True) -> Lease:
    """Take ``folder``'s lease, waiting up to ``wait_s`` for a live holder; RunLockedError
    (exit 5) naming the holder when it is still live then. The new holder number is above
    the file's and ``floor`` (the highest the run's records carry). ``in_place``: object
    mode, where a torn lease file is an unknown holder (``_torn``). ``settle``: another
    trainer may be taking it at the same moment (module docstring); False for a folder this
    process made alone."""
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        looked = time.monotonic()
        try:
            current = read(folder)
        except RunRecordError:
            if not in_place:
                raise
            current = _torn(folder, floor, lease_s)
        if current is None or not current.live():
            began = _uptime()
            mine = Holder(number=max(current.number if current else 0, floor) + 1,
                          host=socket.gethostname(), boot=boot_id(), pid=os.getpid(),
                          since=_iso(time.time()), expires=time.time() + lease_s,
                          lease_s=lease_s)
            _write(folder, mine, in_place=in_place)
            now = read(folder)
            if now is not None and now.same(mine) and (
                    not settle or _settled(folder, mine, time.monotonic() - looked)):
                return Lease(folder, mine, began, in_place=in_place)
            continue  # another trainer took it in between: it is live now
        if time.monotonic() >= deadline:
            raise RunLockedError(
                f"{folder} is held by {current.describe()} on another mount, still live after "
                f"{wait_s:.0f}s (LOCK_WAIT); two trainers must not write one run: stop the other "
                "one, give this job another RUN_NAME, or retry later.")
        if not said:
            log(f"run folder {folder} is leased to {current.describe()}; waiting up to "
                f"{wait_s:.0f}s for it to end (LOCK_WAIT)")
            said = True
        VOLUME.raise_if_stopping()
        with VOLUME.idle():
            time.sleep(POLL_S)


def live(folder: Path) -> bool:
    """Whether another process holds ``folder``'s lease now (a damaged or unreadable file:
    no)."""
    try:
        holder = read(folder)
    except (RunRecordError, VolumeError):
        return False
    return holder is not None and holder.live()
