"""Shared test helpers: the rlpyt fixture's location and running the real `warmstart` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Settings for training runs short enough for a test: a few hundred real ALE steps.
SHORT_RUN = {
    "ENGINE": "native",  # rlpyt's engine has its own tests; auto would pick it where installed
    "STEPS": "400",
    "MIN_STEPS_LEARN": "384",  # 4 updates: a run that learns, no longer than it must
    "REPLAY_SIZE": "2000",
    "LOG_EVERY": "200",
    # `make test` runs a test per core and one more: a trainer with a thread per core on top would
    # make torch's threads wait on each other (updates several times slower under load, measured)
    "TORCH_THREADS": "1",
    # the curve is a by-product drawn after the run ended; tests about it turn it back on
    "LEARNING_CURVE": "0",
}
FILES_ONLY_RUN = SHORT_RUN | {"MIN_STEPS_LEARN": "100000"}
"""A short run without updates, for tests about the files a run leaves, not about learning:
its snapshots have rlpyt's full structure and it takes a quarter of the time."""
EVAL_RUN = SHORT_RUN | {"SEED": "3", "EVAL_EVERY": "200", "EVAL_EPISODES": "1",
                        "LEARNING_CURVE": "1", "DETERMINISTIC": "1"}
"""A short run that evaluates one game at each log point and draws its learning curve
(deterministic kernels: tests compare its weights bit for bit with a run without evaluation,
which on a GPU holds only with them)."""


def fixtures_dir() -> Path:
    """``SHARED_FIXTURES`` (set by .ci/run), else ../shared/fixtures beside the repository."""
    return Path(os.environ.get("SHARED_FIXTURES", REPO.parent / "shared" / "fixtures"))


@pytest.fixture
def rlpyt_snapshot() -> Path:
    """params.pkl written by rlpyt itself (example 1, pong, 10k steps); skips when absent."""
    path = fixtures_dir() / "rlpyt" / "pong_example1" / "params.pkl"
    if not path.exists():
        pytest.skip(f"needs a snapshot written by rlpyt itself, not found at {path}: set "
                    "SHARED_FIXTURES to the folder holding rlpyt/pong_example1/ (README, "
                    "Development)")
    return path


@pytest.fixture
def rlpyt_run_dir(tmp_path: Path, rlpyt_snapshot: Path) -> Path:
    """A CKPT_DIR holding a copy of the rlpyt run folder (never the shared original)."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(rlpyt_snapshot.parent, ckpt / "pong_example1")
    for path in (ckpt / "pong_example1").iterdir():
        path.chmod(0o644)
    return ckpt


def clean_env(**settings: str) -> dict[str, str]:
    """The process environment without any warmstart setting, plus ``settings``."""
    from warmstart.config import without_settings

    env = without_settings(os.environ)
    env.update(settings)
    return env


def warmstart(*args: str, timeout: float = 600, **settings: str) -> subprocess.CompletedProcess:
    """Run the `warmstart` command as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "warmstart", *args], env=clean_env(**settings),
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_train(ckpt: Path, log: Path, settings: dict[str, str]) -> subprocess.Popen:
    """`warmstart train` on ``ckpt`` in a process group of its own (a test can signal or kill
    it whole), its output to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "warmstart", "train"], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=clean_env(CKPT_DIR=str(ckpt), **settings))


@dataclass(frozen=True)
class ColdThenWarm:
    """A volume after `warmstart train` twice (``EVAL_RUN``): ``run_0`` cold, ``run_1`` warm
    from it, and what each printed. Shared by the whole session: read it, never write it
    (copy the folder to change anything)."""

    ckpt: Path
    cold: subprocess.CompletedProcess
    warm: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def cold_then_warm(tmp_path_factory: pytest.TempPathFactory) -> ColdThenWarm:
    """The cold start and the warm start from it that tests of training and of evaluation
    both read: two real runs, trained once per session instead of once per test module."""
    ckpt = tmp_path_factory.mktemp("cold_then_warm") / "ckpt"
    ckpt.mkdir()
    done = []
    for _ in range(2):
        result = warmstart(CKPT_DIR=str(ckpt), **EVAL_RUN)
        assert result.returncode == 0, result.stdout + result.stderr
        done.append(result)
    return ColdThenWarm(ckpt, *done)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that share a module- or session-scoped fixture form one xdist group, run first.

    `make test` spreads tests over the cores with ``--dist loadgroup``: a group runs on one
    worker, so an expensive shared fixture (training runs) is built once, not once per worker.
    A session-scoped one is shared across modules too: its group is named by the fixture alone.
    """
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        fixtures = defs.name2fixturedefs.items() if defs else ()
        shared = sorted((found[-1].scope != "session", name) for name, found in fixtures
                        if found and found[-1].scope in ("module", "session")
                        and not found[-1].func.__module__.startswith("_pytest"))
        if shared:
            module_scoped, name = shared[0]
            owner = item.module.__name__ if module_scoped else "session"
            item.add_marker(pytest.mark.xdist_group(f"{owner}:{name}"))
    # groups first (a stable sort keeps each group's tests together and in order): a group is
    # the longest unit of work, and one handed out last would leave the other cores idle
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)
