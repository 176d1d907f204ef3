"""SIGINT and SIGTERM at any moment of any command: one line and the conventional exit code.

Python's defaults answer Ctrl-C with a KeyboardInterrupt traceback of 20-50 lines and SIGTERM
with no word at all. Here both raise ``Interrupted`` where the program happens to be, so every
``finally`` and ``except BaseException`` on the way out runs (a half-written PNG or video is
removed, a lock is released) and the CLI prints one line. Training replaces these handlers
with its own once it can stop cleanly (``train._install_signal_handlers``: finish the
iteration, write a final snapshot).

Three moments are kept from raising there:

- inside an import. A module whose code an exception cuts short stays half-initialised: numpy
  then answers the retry inside the same import chain with "ImportError: cannot load module
  more than once per process" (a traceback instead of the line), a half-imported torch fails
  or crashes on the next import. The signal is held until the import is done, re-checked
  every ``HOLD_RECHECK_S`` through a timer signal (SIGALRM), then raised.
- in a finalizer (a weakref callback, a ``__del__``), where Python prints the exception and
  drops it: delivered again the same way (``_deliver_again``).
- inside a ``holding_stop`` block: steps that must not be cut apart.

This module imports nothing but ``signal`` and ``sys``: ``python -m warmstart`` imports it and
installs the handlers before anything else (``__main__``).
"""

from __future__ import annotations

import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing itself takes milliseconds to import: only for the type checker
    from types import FrameType, TracebackType
    from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HOLD_RECHECK_S = 0.005
"""How often a signal held during an import checks whether the import is done."""
_IMPORT_MACHINERY = "<frozen importlib._bootstrap"
"""The start of the file name of importlib's own frames (``_bootstrap``, ``_bootstrap_external``),
which every import that runs Python code (a module's body, a C extension's init) passes through."""

_held: int | None = None
"""The stop signal being held (it came during an import or a finalizer), until it is raised."""
_holding = 0
"""Open ``holding_stop`` blocks: while one is, a stop signal is held as during an import."""


class Interrupted(BaseException):
    """A stop signal arrived. BaseException, as KeyboardInterrupt is: no ``except Exception``
    on the way out may swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.name)


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside an import (importlib's frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_IMPORT_MACHINERY):
            return True
        frame = frame.f_back
    return False


def _stop(signum: int, frame: FrameType | None) -> None:
    """Raise ``Interrupted`` here, or hold the signal while an import runs."""
    global _held
    if _holding or _importing(frame):
        if _held is None:
            _held = signum
        signal.signal(signal.SIGALRM, _recheck)
        signal.setitimer(signal.ITIMER_REAL, HOLD_RECHECK_S)
        return
    # A second signal while the first unwinds is the same request (a group signal and a
    # forwarding parent, or an impatient Ctrl-C): ignored, so the clean-up it would cut short
    # (removing a temp file) completes.
    ignore()
    raise Interrupted(signum)


def _recheck(_alarm: int, frame: FrameType | None) -> None:
    """SIGALRM while a signal is held: raise it now unless the import is still running."""
    if _held is not None:
        _stop(_held, frame)


def _deliver_again(unraisable: Any) -> None:
    """``sys.unraisablehook``: a signal that arrived while Python ran a finalizer (a weakref
    callback, a ``__del__``) raised ``Interrupted`` where exceptions are printed and dropped,
    with a traceback. Deliver it again a few milliseconds later instead, through the timer,
    so that it lands in the program itself (here, or in another thread, it would run at
    once)."""
    global _held
    stop = unraisable.exc_value
    if not isinstance(stop, Interrupted):
        sys.__unraisablehook__(unraisable)
        return
    _held = stop.signum
    signal.signal(signal.SIGALRM, _recheck)
    signal.setitimer(signal.ITIMER_REAL, HOLD_RECHECK_S)


def install() -> dict[int, Any]:
    """From now on SIGINT and SIGTERM raise ``Interrupted``; returns the handlers replaced.

    A signal the process was started ignoring (SIGINT under ``nohup`` or a shell's ``&``)
    stays ignored, as Python's own default leaves it."""
    sys.unraisablehook = _deliver_again
    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, _stop)
    return previous


def raise_held() -> None:
    """Raise the stop signal held back during an import, if there is one. For the places
    that then replace the handlers (training's) or stop listening (the end of a block)."""
    global _held
    signum, _held = _held, None
    if signum is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        ignore()
        raise Interrupted(signum)


def ignore() -> None:
    """SIGINT and SIGTERM are ignored from now on, and a held one is dropped: after a first
    signal (the same request again), and once a command's work is done and its exit code
    decided (Python's own exit would otherwise meet one with its defaults: a traceback, or
    once it restored them, death by the signal)."""
    global _held
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if _held is not None:
        _held = None
        signal.setitimer(signal.ITIMER_REAL, 0)


class raising_on_stop:  # lower case: used as the function it was, ``with raising_on_stop():``
    """Within the block, SIGINT and SIGTERM raise ``Interrupted``. The old handlers return
    when the block ends normally (a signal held until then is raised inside it); after a
    signal, further ones stay ignored until the exit."""

    def __enter__(self) -> None:
        self.previous = install()

    def __exit__(self, kind: type[BaseException] | None, _error: BaseException | None,
                 _trace: TracebackType | None) -> None:
        if kind is None:
            raise_held()
            for signum, handler in self.previous.items():
                signal.signal(signum, handler)


class holding_stop:  # lower case, as ``raising_on_stop``: ``with holding_stop():``
    """Within the block a stop signal is held, as during an import, and raised as the block
    ends; after an error in it, a few milliseconds later. For steps that must not be cut
    apart: a child process started by code whose clean-up begins only after it started
    (imageio's ffmpeg), cut short in between, would be stopped by no one."""

    def __enter__(self) -> None:
        global _holding
        _holding += 1

    def __exit__(self, kind: type[BaseException] | None, _error: BaseException | None,
                 _trace: TracebackType | None) -> None:
        global _holding
        _holding -= 1
        if kind is None and not _holding:
            raise_held()


def say_stopped(stop: Interrupted) -> int:
    """The one line on stderr (dropped if stderr is gone); returns the exit code."""
    try:
        print(f"warmstart: stopped by {stop.name}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    return stop.exit_code
