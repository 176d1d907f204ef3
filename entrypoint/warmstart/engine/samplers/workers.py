"""The batch's environments stepped in parallel by worker processes, as rlpyt's ``CpuSampler``.

``ParallelEnvs`` has ``SerialEnvs``' interface and results: worker ``w`` owns a contiguous
slice of the ``B`` environments, each seeded as ``SerialEnvs`` seeds it, so a run's results do
not depend on how many workers step it, and states taken with one worker count restore into
any other. One ``step`` writes the actions into a shared buffer, tells every worker to go, and
waits for all of them: the emulators run at once, one worker per usable CPU.

Workers are fresh interpreters running env_worker.py (never a fork of a trainer that may
already run torch's threads), given the trainer's ``sys.path`` so they import the same code. A
worker that dies, or stops answering for ``REPLY_TIMEOUT_S``, is a ``SamplerError`` (exit 9) at
the next call, never a hang; the other workers are stopped at once. Workers die with the
trainer, even on SIGKILL (env_worker.py), and ``close`` waits for them.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from ...errors import SamplerError
from ..hardware.cpus import usable_cpus
from .atari import EnvState
from .env_worker import SharedBatch
from .envs import Envs, EnvSteps, SerialEnvs

REPLY_TIMEOUT_S = 120.0  # longest wait for one answer: a start (imports, ROM) under heavy load
POLL_S = 1.0  # how often a wait checks that the worker process is still there
CLOSE_TIMEOUT_S = 5.0  # how long close waits for a worker to leave before killing it
BOOT = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
        f"from {__package__}.env_worker import main; main(sys.argv[2:])")


class RemoteTraceback(Exception):
    """A worker's traceback, as the cause of the exception its command raised there."""


def worker_count(batch_B: int) -> int:
    """One worker per usable CPU (affinity and container quota), at most one per environment."""
    return min(batch_B, usable_cpus())


def make_envs(game: str, seeds: list[int], workers: int) -> Envs:
    """``SerialEnvs`` for one worker or none (no process to start), else ``ParallelEnvs``."""
    return SerialEnvs(game, seeds) if workers <= 1 else ParallelEnvs(game, seeds, workers)


def _shared_fd(size: int) -> int:
    """A file descriptor of ``size`` zeroed bytes in memory, with no name to clean up."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("warmstart-envs", 0)
    else:
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, size)
    return fd


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stop(procs: list[subprocess.Popen], conns: list[Connection]) -> None:
    """Ask every worker to leave, kill any that has not left within ``CLOSE_TIMEOUT_S``."""
    for conn in conns:
        try:
            conn.send(("close",))
        except OSError:
            pass
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for conn in conns:
        conn.close()


class ParallelEnvs:
    """``len(seeds)`` Atari games stepped by ``workers`` processes, as ``SerialEnvs`` would.

    Start it from the trainer's main thread: Linux kills the workers when the thread that
    started them ends (env_worker.die_with_parent).
    """

    def __init__(self, game: str, seeds: list[int], workers: int) -> None:
        count = len(seeds)
        if not 1 <= workers <= count:
            raise ValueError(f"{workers} workers for {count} environments: need 1..{count}")
        bounds = [-(-count * w // workers) for w in range(workers + 1)]  # the first ones larger
        self.parts = [range(a, b) for a, b in itertools.pairwise(bounds)]
        self.pids: list[int] = []
        self._procs: list[subprocess.Popen] = []
        self._conns: list[Connection] = []
        self._closer = weakref.finalize(self, _stop, self._procs, self._conns)
        self._failure: SamplerError | None = None
        self._unread: list[int] = []  # per worker: answers not read yet (an interrupted call)
        fd = _shared_fd(SharedBatch.nbytes(count))
        try:
            self._buffer = mmap.mmap(fd, SharedBatch.nbytes(count))
            self._shared = SharedBatch.over(self._buffer, count)
            for _ in self.parts:
                self._start(fd)
            self.n_actions = self._call_all([("start", game, [seeds[b] for b in part], part.start,
                                              count) for part in self.parts])[0]
        except BaseException:
            self.close()
            raise
        finally:
            os.close(fd)

    def _start(self, buffer_fd: int) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, json.dumps(sys.path), str(theirs.fileno()),
                 str(buffer_fd), str(os.getpid())],
                pass_fds=(theirs.fileno(), buffer_fd), stdin=subprocess.DEVNULL,
                start_new_session=True)  # a Ctrl-C to the terminal's group is the trainer's
        self._procs.append(proc)
        self._conns.append(Connection(ours.detach()))
        self._unread.append(0)
        self.pids.append(proc.pid)

    def __len__(self) -> int:
        return len(self._shared.actions)

    def reset(self) -> np.ndarray:
        """A new game in every environment; their first observations, uint8 [B, 4, 104, 80]."""
        self._call_all(("reset",))
        return self._shared.observations.copy()

    def step(self, actions: np.ndarray) -> EnvSteps:
        """Environment ``b`` takes ``actions[b]``; an ended game is reset at once."""
        self._check()
        self._shared.actions[:] = actions
        self._call_all(("step",))
        s = self._shared
        return EnvSteps(s.observations.copy(), s.rewards.copy(), s.dones.copy(),
                        s.game_scores.copy(), s.traj_dones.copy())

    def states(self) -> list[EnvState]:
        """Each environment's exact state, for an exact resume."""
        return [state for part in self._call_all(("states",)) for state in part]

    def restore(self, states: list[EnvState]) -> None:
        """Continue every environment from ``states`` (from ``states()`` of the same shape)."""
        if len(states) != len(self):
            raise ValueError(f"{len(states)} saved environments do not fit {len(self)}")
        self._call_all([("restore", [states[b] for b in part]) for part in self.parts])

    def close(self) -> None:
        """Stop the workers and wait for them (idempotent)."""
        self._closer()

    def _check(self) -> None:
        """Raise a failure again; read and drop the answers an interrupted call left unread
        (an exception from a signal handler between send and answer), so that no worker is
        still at an old command when the next one writes its actions."""
        if self._failure is not None:
            raise SamplerError(str(self._failure))
        if not self._closer.alive:
            raise ValueError("these environments are closed")
        for w, unread in enumerate(self._unread):
            for _ in range(unread):
                self._answer(w)

    def _call_all(self, commands: tuple | list[tuple]) -> list[Any]:
        """Send each worker its command (one for all, or one each), then
        collect every answer before raising a worker's error, so none is left unread."""
        self._check()
        for w, conn in enumerate(self._conns):
            try:
                conn.send(commands if isinstance(commands, tuple) else commands[w])
            except OSError:
                self._died(w)
            self._unread[w] += 1
        answers = [self._answer(w) for w in range(len(self._conns))]
        for kind, result in answers:
            if kind == "error":
                err, trace = result
                raise err from RemoteTraceback(trace)
        return [result for _, result in answers]

    def _answer(self, w: int) -> tuple[str, Any]:
        conn, proc = self._conns[w], self._procs[w]
        waited = 0.0
        try:
            while not conn.poll(POLL_S):
                waited += POLL_S
                if proc.poll() is not None:
                    self._died(w)
                if waited >= REPLY_TIMEOUT_S:
                    self._fail(f"environment worker {w} (pid {proc.pid}) did not answer in "
                               f"{REPLY_TIMEOUT_S:.0f} s; all workers were stopped")
            answer = conn.recv()
        except (EOFError, OSError):
            self._died(w)
        self._unread[w] -= 1
        return answer

    def _died(self, w: int) -> None:
        proc, part = self._procs[w], self.parts[w]
        try:
            code = proc.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        how = ("its connection closed" if code is None else
               f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}")
        envs = (f"environment {part.start}" if len(part) == 1 else
                f"environments {part.start}-{part.stop - 1}")
        self._fail(f"environment worker {w} (pid {proc.pid}, {envs}) died ({how}); the other "
                   "workers were stopped, and a restart resumes from the last snapshot")

    def _fail(self, message: str) -> None:
        self._failure = SamplerError(message)
        self.close()
        raise self._failure
