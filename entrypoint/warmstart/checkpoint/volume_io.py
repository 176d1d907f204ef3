"""The run's checkpoint-volume calls, off the main thread: a stall is said, a stop obeyed, a
transient failure retried.

A thread blocked inside a FUSE call (s3fs or gcsfuse whose object store stopped answering)
runs no Python signal handler, and s3fs and fusepy ignore the kernel's FUSE interrupt: a
trainer writing from its main thread would sit silent for as long as the outage lasts, and a
SIGTERM would take effect only after a second one, past the pod's grace period. So the run's
volume calls go to one worker thread, in order, and the main thread waits for each in short
timed waits, during which signal handlers run and the clock is watched:

- a call that has not returned for VOLUME_STALL_WARN seconds is said (operation, path, how
  long), again every VOLUME_STALL_WARN while it lasts, and once more when it returns;
- after a stop signal, a call that has not returned for VOLUME_STALL_WARN seconds (counted
  from the signal at the earliest) ends the process: one line, exit 11, no final snapshot. A
  second signal during a reported stall does the same at once. The worker is a daemon thread
  and the exit is ``os._exit``: nothing waits for the stuck thread (nor for the lease's, stuck
  the same way). The volume is left as a kill leaves it: the last complete snapshot, and at
  most a temp file or an unsettled ``writing`` entry that the next start settles;
- the start (finding and checking the start snapshot, the probe, the lease and the run
  folder) runs on the worker as one call, so a volume that stalls before training is said and
  bounded the same way. Inside it, each volume call names itself (``note``: the stall line
  says which file), and waits that are not the volume's (another trainer's lock or lease,
  ``idle``) stop the clock and end at a stop signal: nothing is written yet, so the stop
  is ``Interrupted`` (exit 130/143), not a final snapshot;
- once training runs (``retry_from_now``), an error a network volume gives during an outage
  (``TRANSIENT``) is retried after 1, 2, 4 ... ``BACKOFF_CAP_S`` seconds, each try the whole
  write again from a fresh temp file (after an error at close the file's state is unknown),
  while the run's lease leaves time for it and no stop is asked for; then exit 10, which the
  Jobs retry. A volume that is wrong (full, read-only, not permitted) fails at once: exit 4.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from ..errors import VolumeError, VolumeStalledError, VolumeUnavailableError
from ..signals import Interrupted
from .volume_errors import TRANSIENT, volume_error

T = TypeVar("T")

BACKOFF_CAP_S = 30.0
"""The longest wait between two tries: a few tries still fit in the shortest lease (30 s)."""
RETRY_MARGIN_S = 2.0
"""A retry is made only if the lease still has this long left once its wait is over: time for
the write itself, so a retry never runs into the lease's lapse (exit 5) instead of exit 10."""
WAIT_SLICE_S = 0.1
"""How long the main thread waits at a time: a signal handler runs within this."""


@dataclass
class _Call:
    """A call on the worker. ``op``, ``path`` and ``started`` describe what it is doing now:
    the worker updates them as a long call (the start) moves from file to file; while
    ``idle`` it waits on something other than the volume, and no stall is counted."""

    op: str
    path: Path
    fn: Callable[[], Any]
    started: float = field(default_factory=time.monotonic)
    idle: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def doing(self) -> tuple[str, Path, float]:
        return self.op, self.path, self.started


class VolumeIO:
    """The process's one volume worker and what the main thread knows of it."""

    def __init__(self) -> None:
        self.stall_warn = 30.0
        self._log: Callable[[str], None] = print
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._current: _Call | None = None
        self._stop_at: float | None = None
        self._stop_signal: int | None = None
        self._retrying = False

    def configure(self, *, stall_warn: float, log: Callable[[str], None]) -> None:
        """Set up for one training run (a fresh start: no stop asked for, nothing retried
        until training runs; a test may train several times in one process)."""
        self.stall_warn = stall_warn
        self._log = log
        self._stop_at = None
        self._stop_signal = None
        self._retrying = False

    def retry_from_now(self) -> None:
        """The volume passed the start checks and training runs: from here on a transient
        error is an outage to wait out (exit 10 if it lasts), not a wrong volume (exit 4)."""
        self._retrying = True

    def stopping(self, signum: int) -> None:
        """A stop signal came (the signal handler says so): a stall from now on ends the
        process, a failing write is not retried, and a wait in the start ends."""
        if self._stop_at is None:
            self._stop_at = time.monotonic()
            self._stop_signal = signum

    def stalled(self) -> bool:
        """Whether a call in flight has been said to stall (waited VOLUME_STALL_WARN)."""
        current = self._current
        return (current is not None and not current.idle
                and time.monotonic() - current.started >= self.stall_warn)

    def _on_worker(self) -> _Call | None:
        """The call the worker runs, when the caller is the worker (else None)."""
        if threading.current_thread() is self._worker:
            return self._current
        return None

    def note(self, op: str, path: Path) -> None:
        """Inside a long call on the worker: it now does ``op`` on ``path`` (its stall clock
        starts again). Elsewhere: nothing."""
        call = self._on_worker()
        if call is not None:
            call.op, call.path, call.started, call.idle = op, path, time.monotonic(), False

    @contextlib.contextmanager
    def idle(self) -> Iterator[None]:
        """A wait inside a call on the worker that is not the volume's (another trainer's
        lock): not a stall. Elsewhere: nothing."""
        call = self._on_worker()
        if call is None:
            yield
            return
        call.idle = True
        try:
            yield
        finally:
            call.started, call.idle = time.monotonic(), False

    def raise_if_stopping(self) -> None:
        """In a wait before anything is written: a stop signal ends the command there."""
        if self._stop_signal is not None:
            raise Interrupted(self._stop_signal)

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            try:
                call.result = call.fn()
            except BaseException as err:  # noqa: BLE001  (handed to the waiting thread)
                call.error = err
            call.done.set()

    def call(self, op: str, path: Path, fn: Callable[[], T]) -> T:
        """``fn()`` (a call on ``path`` of the volume, ``op`` in the user's words) on the
        worker, the main thread waiting; an OSError comes back as a VolumeError."""
        if threading.current_thread() is self._worker:  # inside a long call: name this part
            self.note(op, path)
            return fn()
        if self._worker is None:
            self._worker = threading.Thread(target=self._serve, daemon=True,
                                            name="warmstart-volume")
            self._worker.start()
        call = _Call(op, path, fn)
        self._current = call
        self._calls.put(call)
        said, watched = 0, call.doing()
        try:
            while not call.done.wait(WAIT_SLICE_S):
                if call.idle or call.doing() != watched:  # that part is over
                    self._answered(said, watched)
                    said, watched = 0, call.doing()
                if call.idle:
                    continue
                now = time.monotonic()
                if now - watched[2] >= self.stall_warn * (said + 1):
                    said += 1
                    self._log(f"checkpoint volume stalled: {watched[0]} {watched[1]} has not "
                              f"returned for {now - watched[2]:.0f}s")
                if (self._stop_at is not None
                        and now - max(self._stop_at, watched[2]) >= self.stall_warn):
                    self.abandon("a stop signal")
        finally:
            self._current = None
        self._answered(said, watched)
        if isinstance(call.error, OSError):
            raise volume_error(path, call.error) from None
        if call.error is not None:
            raise call.error
        return call.result

    def _answered(self, said: int, watched: tuple[str, Path, float]) -> None:
        """After a part said to stall has returned: say so."""
        if said:
            op, path, started = watched
            self._log(f"checkpoint volume answered: {op} {path} returned after "
                      f"{time.monotonic() - started:.0f}s")

    def run(self, op: str, path: Path, fn: Callable[[], T], *,
            time_left: Callable[[], float]) -> T:
        """``call``, retried on a transient error once training runs (see the module's
        docstring); ``time_left`` says how long the run's lease still lets this process
        write. ``fn`` must redo its whole write each time."""
        tries, began = 0, time.monotonic()
        while True:
            try:
                return self.call(op, path, fn)
            except VolumeError as err:
                if not self._retrying or err.errno not in TRANSIENT:
                    raise
                why = os.strerror(err.errno or errno.EIO)
                delay = min(2.0 ** tries, BACKOFF_CAP_S)
                if self._stop_at is not None or time_left() < delay + RETRY_MARGIN_S:
                    raise VolumeUnavailableError(
                        f"{path}: checkpoint volume failed mid-run ({why}; {op} tried "
                        f"{tries + 1} time(s) over {time.monotonic() - began:.0f}s); a restart "
                        "resumes from the last snapshot.") from None
                tries += 1
                self._log(f"checkpoint volume error: {op} {path} failed ({why}); retry {tries} "
                          f"in {delay:g}s, the whole write again")
                self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when a stop signal comes: no retry after it."""
        until = time.monotonic() + seconds
        while self._stop_at is None and time.monotonic() < until:
            time.sleep(WAIT_SLICE_S)

    def abandon(self, reason: str) -> NoReturn:
        """End the process now, during a stall: one line, exit 11 (module docstring)."""
        current = self._current
        where, what, waited = ((current.path, current.op, time.monotonic() - current.started)
                               if current is not None else ("the checkpoint volume", "a call",
                                                            0.0))
        err = VolumeStalledError(
            f"{where}: checkpoint volume stalled ({what} has not returned for {waited:.0f}s) "
            f"after {reason}; exiting without a final snapshot: the last complete snapshot on "
            "the volume stands, and a restart resumes from it.")
        try:
            sys.stdout.flush()
            print(f"warmstart: error: {err}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        os._exit(err.exit_code)


VOLUME = VolumeIO()
"""The process's volume worker: one per process, as signal handlers are."""
