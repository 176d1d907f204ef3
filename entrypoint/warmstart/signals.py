"""SIGINT and SIGTERM at any moment of any command: one line and the conventional exit code.

Python's defaults answer Ctrl-C with a KeyboardInterrupt traceback of 20-50 lines and SIGTERM
with no word at all. Here both raise ``Interrupted`` where the program happens to be, so every
``finally`` and ``except BaseException`` on the way out runs (a half-written PNG or video is
removed, a lock is released) and the CLI prints one line. Training replaces these handlers
with its own once it can stop cleanly (``train._install_signal_handlers``: finish the
iteration, write a final snapshot).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop signal arrived. BaseException, as KeyboardInterrupt is: no ``except Exception``
    on the way out may swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.name)


def _raise(signum: int, _frame: FrameType | None) -> None:
    # A second signal while the first unwinds is the same request (a group signal and a
    # forwarding parent, or an impatient Ctrl-C): ignored, so the clean-up it would cut short
    # (removing a temp file) completes.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


def _deliver_again(unraisable: Any) -> None:
    """``sys.unraisablehook``: a signal that arrived while Python ran a finalizer (a weakref
    callback, a ``__del__``) raised ``Interrupted`` where exceptions are printed and dropped,
    with a traceback. Deliver it again a millisecond later instead, through a timer signal, so
    that it lands in the program itself (here, or in another thread, it would run at once)."""
    stop = unraisable.exc_value
    if not isinstance(stop, Interrupted):
        sys.__unraisablehook__(unraisable)
        return

    def again(_signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(stop.signum)

    signal.signal(signal.SIGALRM, again)
    signal.setitimer(signal.ITIMER_REAL, 0.001)


def install() -> dict[int, Any]:
    """From now on SIGINT and SIGTERM raise ``Interrupted``; returns the handlers replaced.

    A signal the process was started ignoring (SIGINT under ``nohup`` or a shell's ``&``)
    stays ignored, as Python's own default leaves it."""
    sys.unraisablehook = _deliver_again
    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, _raise)
    return previous


@contextlib.contextmanager
def raising_on_stop() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``Interrupted``. The old handlers return
    when the block ends normally; after a signal, further ones stay ignored until the exit."""
    previous = install()
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def say_stopped(stop: Interrupted) -> int:
    """The one line on stderr (dropped if stderr is gone); returns the exit code."""
    with contextlib.suppress(OSError, ValueError):
        print(f"warmstart: stopped by {stop.name}", file=sys.stderr, flush=True)
    return stop.exit_code
