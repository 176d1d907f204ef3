"""Environments stepped by worker processes: the serial results, exact states, and workers
that neither hang the trainer when they die nor outlive it, whatever signals it gets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import clean_env
from warmstart.engine.samplers.envs import EnvSteps, SerialEnvs, env_seeds
from warmstart.engine.samplers.workers import ParallelEnvs, make_envs, worker_count
from warmstart.errors import EXIT_CODES, SamplerError

B = 4


def _play(envs: SerialEnvs | ParallelEnvs, actions: np.ndarray) -> list[EnvSteps]:
    return [envs.step(a) for a in actions]


def _assert_same(got: list[EnvSteps], expected: list[EnvSteps]) -> None:
    for step, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        for name, a, b in zip(EnvSteps._fields, mine, theirs):
            assert a.dtype == b.dtype and a.shape == b.shape, (step, name)
            np.testing.assert_array_equal(a, b, err_msg=f"step {step}, {name}")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], tries: int = 100) -> bool:
    """Whether every process in ``pids`` ended, polled for at most ``tries`` tenths of a second."""
    for _ in range(tries):
        if all(_gone(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def serial_breakout() -> tuple[np.ndarray, np.ndarray, list[EnvSteps]]:
    """Breakout's first observations and 250 random steps of 4 environments, in-process:
    random play loses lives and whole games in that time, so resets inside step are covered."""
    envs = SerialEnvs("breakout", env_seeds(11, B))
    first = envs.reset()
    actions = np.random.default_rng(5).integers(envs.n_actions, size=(250, B))
    steps = _play(envs, actions)
    assert any(s.traj_dones.any() for s in steps) and any(s.rewards.any() for s in steps)
    return first, actions, steps


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_any_worker_count_gives_the_serial_results(
        workers: int, serial_breakout: tuple[np.ndarray, np.ndarray, list[EnvSteps]]) -> None:
    first, actions, expected = serial_breakout
    envs = ParallelEnvs("breakout", env_seeds(11, B), workers)
    try:
        assert len(envs) == B and len(envs.pids) == workers
        assert envs.n_actions == SerialEnvs("breakout", [0]).n_actions
        np.testing.assert_array_equal(envs.reset(), first)
        _assert_same(_play(envs, actions), expected)
    finally:
        envs.close()
    assert _wait_gone(envs.pids)


def test_states_restore_across_worker_counts() -> None:
    source = ParallelEnvs("pong", env_seeds(21, B), 2)
    rng = np.random.default_rng(2)
    try:
        source.reset()
        _play(source, rng.integers(source.n_actions, size=(60, B)))
        saved = source.states()
        actions = rng.integers(source.n_actions, size=(40, B))
        expected = _play(source, actions)
    finally:
        source.close()
    for envs in (SerialEnvs("pong", env_seeds(99, B)), ParallelEnvs("pong", env_seeds(99, B), 3)):
        try:
            envs.reset()
            envs.restore(saved)
            _assert_same(_play(envs, actions), expected)
        finally:
            envs.close()


def test_a_failing_command_raises_its_error_and_the_workers_go_on() -> None:
    envs = ParallelEnvs("pong", env_seeds(3, 3), 2)
    try:
        envs.reset()
        breakout = SerialEnvs("breakout", env_seeds(3, 3))
        breakout.reset()
        with pytest.raises(ValueError, match="state of breakout"):
            envs.restore(breakout.states())
        with pytest.raises(ValueError, match="2 saved environments do not fit 3"):
            envs.restore(envs.states()[:2])
        assert envs.step(np.zeros(3, np.int64)).observations.shape == (3, 4, 104, 80)
    finally:
        envs.close()


class _Interrupted(Exception):
    pass


def _interrupt(*_: object) -> None:
    raise _Interrupted


def test_a_call_interrupted_while_waiting_leaves_the_next_calls_right() -> None:
    """An exception from a signal handler while step waits (Ctrl-C without the trainer's
    handlers): the next call first waits for the step's answers and drops them, so no worker
    is still at the old step when new actions are written, nor an answer taken for another."""
    seeds, actions = env_seeds(8, 3), np.random.default_rng(8).integers(6, size=(30, 3))
    serial = SerialEnvs("pong", seeds)
    serial.reset()
    expected = _play(serial, actions)
    envs = ParallelEnvs("pong", seeds, 2)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        envs.reset()
        _play(envs, actions[:10])
        os.kill(envs.pids[1], signal.SIGSTOP)  # worker 1 answers only after the interruption
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(_Interrupted):
            envs.step(actions[10])
        os.kill(envs.pids[1], signal.SIGCONT)
        _assert_same(_play(envs, actions[11:]), expected[11:])
        assert [s.game for s in envs.states()] == ["pong"] * 3
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.kill(envs.pids[1], signal.SIGCONT)
        envs.close()


def test_an_unknown_game_is_the_serial_error_and_leaves_no_worker() -> None:
    with pytest.raises(ValueError) as serial:
        SerialEnvs("pongg", [0, 1])
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(ValueError) as parallel:
        ParallelEnvs("pongg", [0, 1], 2)
    assert str(parallel.value) == str(serial.value)
    assert _wait_gone([p.pid for p in psutil.Process().children() if p.pid not in before])


def test_the_factory_starts_workers_only_for_more_than_one() -> None:
    assert isinstance(make_envs("pong", [0, 1], 1), SerialEnvs)
    envs = make_envs("pong", [0, 1], 2)
    try:
        assert isinstance(envs, ParallelEnvs)
    finally:
        envs.close()
    assert worker_count(1) == 1 and 1 <= worker_count(64) <= 64


@pytest.mark.parametrize("command", ["step", "states"])
def test_a_dead_worker_is_one_clear_error_not_a_hang(command: str) -> None:
    envs = ParallelEnvs("pong", env_seeds(4, 3), 2)
    envs.reset()
    os.kill(envs.pids[1], signal.SIGKILL)
    call = {"step": lambda: envs.step(np.zeros(3, np.int64)), "states": envs.states}[command]
    with pytest.raises(SamplerError) as raised:
        call()
    message = str(raised.value)
    assert f"pid {envs.pids[1]}" in message and "killed by SIGKILL" in message
    assert "environment 2)" in message and "\n" not in message
    assert raised.value.exit_code == 9 and 9 in EXIT_CODES
    assert _wait_gone(envs.pids)  # the surviving worker was stopped too
    with pytest.raises(SamplerError):  # and every later call says so again
        call()
    envs.close()


TRAINER = """
import signal, sys
import numpy as np, torch
from warmstart.engine.samplers.workers import ParallelEnvs

torch.set_num_threads(2)
torch.ones(256, 256) @ torch.ones(256, 256)  # torch's threads run before the workers start
got = []
signal.signal(signal.SIGTERM, lambda *_: got.append("TERM"))
signal.signal(signal.SIGINT, lambda *_: got.append("INT"))
envs = ParallelEnvs("pong", [1, 2, 3], 2)
envs.reset()
print(*envs.pids, flush=True)
if sys.argv[1] == "wait":
    while "TERM" not in got:
        envs.step(np.zeros(3, np.int64))
    states = envs.states()
    envs.step(np.zeros(3, np.int64))
    print("served", len(states), "after", *got, flush=True)
    envs.close()
    print("workers exited", *(p.returncode for p in envs._procs), flush=True)
else:
    signal.pause()
"""


def _trainer(tmp_path: Path, mode: str, as_module: bool) -> tuple[subprocess.Popen, list[int]]:
    """A trainer-like process that starts 2 workers; returns it and the workers' pids.

    Its code is a file run as ``__main__``, by path (as the ``warmstart`` console script runs)
    or with ``-m`` (as ``python -m warmstart``), its top level unguarded: a worker that ran the
    trainer's main module again, as multiprocessing's spawn does, would start workers itself.
    """
    (tmp_path / "trainer.py").write_text(TRAINER)
    how = ["-m", "trainer"] if as_module else [str(tmp_path / "trainer.py")]
    proc = subprocess.Popen([sys.executable, *how, mode], stdout=subprocess.PIPE, text=True,
                            env=clean_env(), cwd=tmp_path, start_new_session=True)
    line = proc.stdout.readline()
    assert line, f"the trainer process ended: {proc.wait()}"
    pids = [int(pid) for pid in line.split()]
    assert [c.pid for c in psutil.Process(proc.pid).children(recursive=True)] == pids
    return proc, pids


def test_no_worker_survives_a_killed_trainer(tmp_path: Path) -> None:
    proc, pids = _trainer(tmp_path, "pause", as_module=False)
    assert not any(_gone(pid) for pid in pids)
    if Path("/proc").is_dir():  # the workers run without torch, whatever the trainer loaded
        for pid in pids:
            assert "libtorch" not in Path(f"/proc/{pid}/maps").read_text()
    proc.kill()
    proc.wait()
    assert _wait_gone(pids), [psutil.Process(p).status() for p in pids if not _gone(p)]


def test_workers_keep_serving_through_sigterm_and_sigint_until_close(tmp_path: Path) -> None:
    proc, pids = _trainer(tmp_path, "wait", as_module=True)
    try:
        for pid in pids:  # sent to the workers themselves: ignored
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGINT)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C, then as kill -TERM -PGID
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "served 3 after" in out and "TERM" in out, out
    assert "workers exited 0 0" in out, out
