"""``python -m warmstart`` and the ``warmstart`` command (``run``, the console script's entry).

Stop signals raise ``Interrupted`` from ``run``'s first line on, before any module of the
command imports (torch's and the ALE's take a while; ``signals`` imports only ``signal``), so a
Ctrl-C then is one line too, not a traceback. Only the interpreter's own start-up and the
import of three small modules (``warmstart``, this one, ``warmstart.signals``) come earlier:
a signal there gets Python's defaults, with nothing read or written yet.

Once the command is done and its exit code decided, stop signals are ignored: the
interpreter's exit (atexit, flushing, finalizing modules) would otherwise meet one with a
traceback, or, once Python restored the default handlers, die by it (return code -2/-15).
The objects left then are collected once and frozen out of the garbage collector: the exit's
own collections, among the objects torch and its compiler created, take about half a second of
CPU for each command that imported torch, only to free memory the process returns anyway. The
one collection first frees what a failed run left in reference cycles (its Atari emulator,
held by the error's frames), which nanobind would otherwise report as leaked, many lines after
the error's one.
"""

import gc
import sys

from . import signals


def run() -> int:
    """The ``warmstart`` command; returns its exit code."""
    try:
        signals.install()  # inside the try: a signal right after it is caught too
        try:
            from .cli import main

            return main()
        finally:  # SystemExit (--help, --version, a bad flag) and a bug's traceback too
            signals.ignore()
            gc.collect()
            gc.freeze()
    except signals.Interrupted as stop:  # before cli.main could catch it, or as it returned
        return signals.say_stopped(stop)


if __name__ == "__main__":
    sys.exit(run())
