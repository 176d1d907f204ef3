"""A read-only HOME (restricted pods, arbitrary uids): caches go to a private temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_training_with_a_read_only_home_writes_only_its_run_folder(tmp_path: Path) -> None:
    """A real run whose HOME cannot be made and whose working directory is the volume: the
    learning curve (matplotlib) and TensorBoard files are written, nothing else lands on the
    volume or in HOME, no warning is printed and the private folder is gone afterwards."""
    volume, temp = tmp_path / "ckpt", tmp_path / "tmp"
    volume.mkdir()
    temp.mkdir()
    home = tmp_path / "home"  # missing: as root, a mode-0555 folder would still be writable
    env = clean_env(**SHORT_RUN, CKPT_DIR=str(volume), RUN_NAME="job", HOME=str(home),
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
    assert not home.exists()
    assert list(temp.iterdir()) == []
