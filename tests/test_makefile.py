"""`make train` as a user types it: the Makefile adds its demo defaults and nothing else.

The Makefile runs against the virtualenv these tests run in (``-o`` keeps make from
reinstalling it), with the real `warmstart` and real short ALE runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, clean_env

VENV = Path(sys.executable).parent.parent


def _make(*args: str, **settings: str) -> subprocess.CompletedProcess:
    if shutil.which("make") is None or not (VENV / "bin" / "warmstart").exists():
        pytest.skip("needs GNU make and the warmstart command in this virtualenv")
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "-o", f"{VENV}/.installed",
         f"VENV={VENV}", *args], env=clean_env(**settings), capture_output=True, text=True,
        timeout=300, check=False)


def test_a_mistyped_ckpt_dir_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "chekpoints"
    result = _make("train", f"CKPT_DIR={missing}")
    assert result.returncode != 0
    assert f"warmstart: error: CKPT_DIR={missing} does not exist" in result.stderr
    assert "Traceback" not in result.stderr and not missing.exists()


def test_a_ckpt_dir_that_is_a_file_gets_warmstarts_line(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    path.write_text("not a folder")
    result = _make("train", CKPT_DIR=str(path))
    assert f"warmstart: error: CKPT_DIR={path} is not a folder." in result.stderr
    assert "mkdir" not in result.stderr


def test_empty_variables_mean_the_demo_defaults(tmp_path: Path) -> None:
    """`make train STEPS=` trains the demo's 2,000 steps, not warmstart's 50,000."""
    for args, expected in ((("STEPS=", "MIN_STEPS_LEARN=100000"), (2000, 100_000)),
                           (("STEPS=100", "MIN_STEPS_LEARN="), (100, 1000))):
        ckpt = tmp_path / args[0]
        ckpt.mkdir()
        result = _make("train", *args, CKPT_DIR=str(ckpt), ENGINE="native", REPLAY_SIZE="2000")
        assert result.returncode == 0, result.stdout + result.stderr
        settings = json.loads((ckpt / "run_0" / "manifest.json").read_text())["config"]
        assert (settings["STEPS"], settings["MIN_STEPS_LEARN"]) == expected
