"""A FUSE test volume for real-process tests: mount tests/fusefs.py, drive it, unmount it."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, start_train

WAIT_S = 600
"""Only against a hang: how long a trainer may take to reach a step before the test fails."""


@dataclass
class Volume:
    """A mounted tests/fusefs.py volume and the channel to its control."""

    backing: Path
    mountpoint: Path
    daemon: subprocess.Popen
    lines: queue.Queue
    object_store: bool = False
    trainers: list[subprocess.Popen] = field(default_factory=list)

    def command(self, line: str) -> None:
        assert self.daemon.stdin is not None
        self.daemon.stdin.write(line + "\n")
        self.daemon.stdin.flush()

    def next_line(self, trainer: subprocess.Popen | None = None) -> str | None:
        """The volume's next line; None when ``trainer`` ended first."""
        for _ in range(WAIT_S * 10):
            try:
                return self.lines.get(timeout=0.1)
            except queue.Empty:
                if trainer is not None and trainer.poll() is not None:
                    return None
        raise AssertionError(f"the test volume said nothing for {WAIT_S}s")

    def start(self, log: Path, settings: dict[str, str]) -> subprocess.Popen:
        """`warmstart train` on this volume, in a process group of its own, its output to
        ``log``; stopped when the volume is unmounted."""
        trainer = start_train(self.mountpoint, log, settings)
        self.trainers.append(trainer)
        return trainer

    def kill_at(self, step: tuple[str, str, int], *, anchor: str, occurrence: int, log: Path,
                settings: dict[str, str]) -> str:
        """Start a trainer, SIGKILL it right after ``step`` following the ``occurrence``-th
        rename of ``anchor`` (tests/fusefs.py); returns its output."""
        op, name, k = step
        self.command(f"pause {anchor} {occurrence} {op} {name} {k}")
        trainer = self.start(log, settings)
        said = self.next_line(trainer)
        if said is None:
            trainer.wait()
            raise AssertionError(f"the trainer ended (exit {trainer.returncode}) before "
                                 f"{op} {name}:\n{log.read_text()}")
        assert said == f"paused {op} {name}", said
        os.killpg(trainer.pid, signal.SIGKILL)
        self.command("go")
        trainer.wait()
        if self.object_store:
            self.settle()
        return log.read_text()

    def settle(self) -> None:
        """Wait until the object store published what a killed writer left open."""
        self.command("settle")
        said = self.next_line()
        assert said == "settled", said


def _fuse_problem() -> str | None:
    try:
        import fuse  # noqa: F401  (fusepy: tests/requirements.txt)
    except (ImportError, OSError) as err:  # OSError: no libfuse.so.2 (apt: libfuse2)
        return f"fusepy cannot load libfuse 2 ({err})"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if os.geteuid() != 0:
        return "mounting a FUSE volume here needs root"
    return None


@contextlib.contextmanager
def fuse_volume(tmp_path: Path, *, slow_rename: float = 0.0, name: str = "volume",
                backing: Path | None = None, object_store: tuple[str, ...] | None = None
                ) -> Iterator[Volume]:
    """Mount tests/fusefs.py over ``backing`` (default: a new ``tmp_path/<name>-backing``) at
    ``tmp_path/<name>``; skips where FUSE cannot mount. Two mounts of one backing folder stand
    for two nodes. ``object_store``: a mount that behaves as Mountpoint for S3, with these of
    tests/fusefs.py's options (``--no-overwrite``, ``--no-delete``)."""
    problem = _fuse_problem()
    if problem is not None:
        pytest.skip(f"needs a FUSE mount: {problem}")
    if backing is None:
        backing = tmp_path / f"{name}-backing"
        backing.mkdir()
    mountpoint = tmp_path / name
    mountpoint.mkdir()
    daemon = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fusefs.py"), str(backing), str(mountpoint),
         "--slow-rename", str(slow_rename),
         *(() if object_store is None else ("--object-store", *object_store))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert daemon.stdout is not None
        for line in daemon.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    volume = Volume(backing, mountpoint, daemon, lines, object_store is not None)
    try:
        ready = volume.next_line(daemon)
        if ready != "ready":
            daemon.wait()
            assert daemon.stderr is not None
            pytest.skip(f"cannot mount a FUSE volume here: {daemon.stderr.read().strip()}")
        yield volume
    finally:
        for trainer in volume.trainers:  # a failed check leaves none running
            if trainer.poll() is None:
                os.killpg(trainer.pid, signal.SIGKILL)
        if daemon.poll() is None:
            volume.command("go")
            volume.command("stall off")
        for trainer in volume.trainers:
            trainer.wait()
        if daemon.poll() is None:
            done = subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False)
            if done.returncode:  # still busy: detach it, so no test leaves a mount behind
                subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True,
                               check=False)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a container engine's mount namespace may still
            daemon.kill()                  # hold the mount: end its connection, ours alone
            daemon.wait()
