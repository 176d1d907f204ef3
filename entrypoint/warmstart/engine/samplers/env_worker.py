"""One environment worker process: a contiguous slice of a batch's environments, stepped here.

``ParallelEnvs`` (workers.py) starts this module in a fresh interpreter, so a worker imports
numpy, cv2 and ale-py and nothing else: no torch, no threads inherited from a trainer, and the
same start whether the trainer runs as ``python -m warmstart`` or as the ``warmstart`` script.
Commands come over a socket; what every step produces is written straight into a shared
buffer that the trainer reads (``SharedBatch``), so only a few bytes cross the socket per step.

A worker never outlives its trainer: the kernel kills it when the trainer dies (Linux's
parent-death signal), and it also leaves when the socket closes or its parent pid changes.
SIGINT and SIGTERM are ignored: they are the trainer's to handle, and the trainer still needs
the environments' states for its final snapshot.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import pickle
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import cv2
import numpy as np

from .atari import HEIGHT, WIDTH, AtariEnv, EnvState

FRAMES = 4  # AtariEnv's default stack of num_img_obs frames, as SerialEnvs uses it
PARENT_CHECK_S = 1.0  # how often an idle worker checks that its trainer is still there
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

_FIELDS: tuple[tuple[str, Any, tuple[int, ...]], ...] = (
    ("game_scores", np.float64, ()), ("actions", np.int64, ()), ("rewards", np.float32, ()),
    ("dones", np.bool_, ()), ("traj_dones", np.bool_, ()),
    ("observations", np.uint8, (FRAMES, HEIGHT, WIDTH)))


class SharedBatch(NamedTuple):
    """Views of one shared buffer, index ``b`` for environment ``b`` of the whole batch."""

    game_scores: np.ndarray  # float64 [B]
    actions: np.ndarray  # int64 [B]: written by the trainer before each step
    rewards: np.ndarray  # float32 [B]
    dones: np.ndarray  # bool [B]
    traj_dones: np.ndarray  # bool [B]
    observations: np.ndarray  # uint8 [B, 4, 104, 80]

    @staticmethod
    def nbytes(count: int) -> int:
        """Size of the buffer for ``count`` environments (each field 8-byte aligned)."""
        return sum(_aligned(count * np.dtype(dtype).itemsize * int(np.prod(shape)))
                   for _, dtype, shape in _FIELDS)

    @classmethod
    def over(cls, buffer: Any, count: int) -> SharedBatch:
        """The views of ``buffer`` (``nbytes(count)`` bytes) for ``count`` environments."""
        views, offset = {}, 0
        for name, dtype, shape in _FIELDS:
            views[name] = np.ndarray((count, *shape), dtype, buffer=buffer, offset=offset)
            offset += _aligned(views[name].nbytes)
        return cls(**views)


def _aligned(size: int) -> int:
    return -(-size // 8) * 8


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; leave if that already happened.

    The parent-death signal fires when the thread that started this process ends, so the
    trainer starts its workers from its main thread. Elsewhere than Linux the worker still
    leaves when the socket closes or its parent pid changes (``serve``).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(0)


class Worker:
    """Environments ``first .. first + len(seeds) - 1`` of a batch, and the commands on them."""

    def __init__(self, game: str, seeds: list[int], first: int, shared: SharedBatch) -> None:
        self.envs = [AtariEnv(game, seed=seed) for seed in seeds]
        self.mine = slice(first, first + len(seeds))
        self.shared = shared

    def reset(self) -> None:
        for env, out in zip(self.envs, self.shared.observations[self.mine]):
            out[...] = env.reset()

    def step(self) -> None:
        """As ``SerialEnvs.step``, each result written into the shared buffer."""
        s, mine = self.shared, range(self.mine.start, self.mine.stop)
        for env, b in zip(self.envs, mine):
            step = env.step(int(s.actions[b]))
            s.observations[b] = env.reset() if step.traj_done else step.observation
            s.rewards[b], s.dones[b] = step.reward, step.done
            s.game_scores[b], s.traj_dones[b] = step.game_score, step.traj_done

    def states(self) -> list[EnvState]:
        return [env.clone_state() for env in self.envs]

    def restore(self, states: list[EnvState]) -> None:
        for env, state in zip(self.envs, states):
            env.restore_state(state)


def serve(conn: Connection, worker: Worker, parent_pid: int) -> None:
    """Answer commands until ``close``, the socket's end, or the parent's death."""
    while True:
        while not conn.poll(PARENT_CHECK_S):
            if os.getppid() != parent_pid:
                return
        try:
            command, *args = conn.recv()
        except EOFError:
            return
        if command == "close":
            conn.send(("ok", None))
            return
        conn.send(_answer(getattr(worker, command), args))


def _answer(method: Any, args: list) -> tuple[str, Any]:
    """``("ok", result)``, or ``("error", (exception, traceback))`` for the trainer to raise.

    A failing command (a state of another game, a bug) is the trainer's to report, with this
    side's traceback; an exception that cannot be pickled goes back as its text.
    """
    try:
        return "ok", method(*args)
    except Exception as err:  # noqa: BLE001 - every failure goes back to the trainer
        trace = traceback.format_exc()
        try:
            pickle.dumps(err)
        except Exception:  # noqa: BLE001
            err = RuntimeError(f"{type(err).__name__}: {err}")
        return "error", (err, trace)


def main(argv: list[str]) -> None:
    """``argv``: the socket's fd, the shared buffer's fd, the parent's pid."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock_fd, buffer_fd, parent_pid = (int(arg) for arg in argv)
    die_with_parent(parent_pid)
    cv2.setNumThreads(1)  # one process per core: the resize runs in the worker's own thread
    conn = Connection(sock_fd)
    _start, game, seeds, first, count = conn.recv()
    buffer = mmap.mmap(buffer_fd, SharedBatch.nbytes(count))  # lives until the process ends
    os.close(buffer_fd)
    kind, worker = _answer(Worker, [game, seeds, first, SharedBatch.over(buffer, count)])
    conn.send((kind, worker.envs[0].n_actions if kind == "ok" else worker))
    if kind == "ok":
        serve(conn, worker, parent_pid)
