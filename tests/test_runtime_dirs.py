"""A read-only HOME (restricted pods, arbitrary uids): caches go to a private temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHORT_RUN, clean_env
from warmstart import runtime_dirs


def test_unwritable_home_moves_every_unset_cache_variable(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path / "missing"), "TMPDIR": str(tmp_path),
               "MPLCONFIGDIR": "/mine"}
    private = runtime_dirs.prepare(environ)
    assert private is not None and private.parent == tmp_path
    assert environ["MPLCONFIGDIR"] == "/mine"  # set by the user: kept
    assert environ["TMPDIR"] == str(tmp_path)
    for variable in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TORCHINDUCTOR_CACHE_DIR",
                     "TRITON_CACHE_DIR", "TORCH_HOME"):
        assert Path(environ[variable]).is_dir()
        assert Path(environ[variable]).parent == private


def test_writable_home_changes_nothing(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path)}
    assert runtime_dirs.prepare(environ) is None
    assert environ == {"HOME": str(tmp_path)}


def test_never_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    """With /tmp unwritable, tempfile would fall back to the working directory (the volume)."""
    monkeypatch.setattr(runtime_dirs, "TEMP_CANDIDATES", ())
    monkeypatch.chdir(tmp_path)
    environ = {"HOME": str(tmp_path / "missing"), "TMPDIR": str(tmp_path)}
    assert runtime_dirs.prepare(environ) is None
    assert list(tmp_path.iterdir()) == []


def test_home_on_the_volume_is_not_used(tmp_path: Path, monkeypatch) -> None:
    """podman gives a uid without a passwd entry the working directory (the volume) as HOME."""
    volume = tmp_path / "ckpt"
    volume.mkdir()
    monkeypatch.chdir(volume)
    environ = {"HOME": str(volume), "TMPDIR": str(tmp_path), "CKPT_DIR": str(volume)}
    private = runtime_dirs.prepare(environ)
    assert private is not None and Path(environ["HOME"]).parent == private
    monkeypatch.chdir(tmp_path)  # working in HOME, with the volume inside it: HOME is fine
    environ = {"HOME": str(tmp_path), "CKPT_DIR": str(volume)}
    assert runtime_dirs.prepare(environ) is None


@pytest.mark.parametrize("home", ["missing", "volume"])
def test_training_writes_only_its_run_folder(home: str, tmp_path: Path) -> None:
    """A real run whose working directory is the volume and whose HOME cannot be made, or is
    the volume itself: the learning curve (matplotlib) and TensorBoard files are written,
    nothing else lands on the volume or in HOME, no warning is printed and the private folder
    is gone afterwards."""
    volume, temp = tmp_path / "ckpt", tmp_path / "tmp"
    volume.mkdir()
    temp.mkdir()
    # missing: as root, a mode-0555 folder would still be writable
    home_dir = volume if home == "volume" else tmp_path / "home"
    env = clean_env(**(SHORT_RUN | {"LEARNING_CURVE": "1"}), CKPT_DIR=str(volume), RUN_NAME="job", HOME=str(home_dir),
                    TMPDIR=str(temp))
    for variable in runtime_dirs.CACHE_VARIABLES:
        if variable not in ("HOME", "TMPDIR"):
            env.pop(variable, None)
    done = subprocess.run([sys.executable, "-m", "warmstart", "train"], env=env, cwd=volume,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert "warn" not in done.stdout.lower(), done.stdout
    assert os.listdir(volume) == ["job"]
    assert (volume / "job" / "learning_curve.png").is_file()
    assert list((volume / "job").glob("events.out.tfevents.*"))
    assert home == "volume" or not home_dir.exists()
    assert list(temp.iterdir()) == []
