"""stdout and stderr that a dead reader cannot break: logging never costs a run or a snapshot.

`warmstart train | head`, a `tee` killed by Ctrl-C before the trainer, a log shipper that
restarts, a redirected log on a full disk: each turns the next write to stdout or stderr into
an OSError (EPIPE, ENOSPC, EIO). Raised inside a log call, that error would end training before
its snapshot, or a signal handler before the final one. Here such a write is dropped instead,
and the stream's file descriptor is pointed at /dev/null so that everything after it (our
lines, a library's prints, C code writing to the fd, the interpreter's own flush at exit) goes
nowhere quietly instead of failing again or printing "Exception ignored ... BrokenPipeError".
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO


class GuardedStream:
    """A text stream whose failed writes are dropped; after the first, it discards quietly."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)
            except OSError:
                self._discard_from_now_on()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except OSError:
                self._discard_from_now_on()

    def _discard_from_now_on(self) -> None:
        """Point the fd at /dev/null: what is still buffered, and every later write by
        anyone holding this fd, then succeeds and goes nowhere."""
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()  # the bytes the failed write left buffered go to /dev/null

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty, ...: the stream's own
        return getattr(self.stream, name)


@contextlib.contextmanager
def guarded_output() -> Iterator[None]:
    """Guard sys.stdout and sys.stderr for the block (a no-op where they already are)."""
    saved = sys.stdout, sys.stderr
    guarded = [s if isinstance(s, GuardedStream) else GuardedStream(s) for s in saved]
    sys.stdout, sys.stderr = guarded
    try:
        yield
    finally:
        for stream in guarded:
            stream.flush()  # a last failure is dropped here too, before the exit's own flush
        sys.stdout, sys.stderr = saved
