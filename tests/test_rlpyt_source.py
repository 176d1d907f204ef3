"""docker/rlpyt-source.sh: an offline rlpyt for the image build is checked against the pin.

A git checkout at another commit is refused with one line naming the commit to check out; a
plain exported tree is copied after one warning line; a folder that is not rlpyt is refused.
With RLPYT_SOURCE set (a checkout at the pinned commit), it is exported at that commit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "docker" / "rlpyt-source.sh"
PIN = re.search(r"^rlpyt @ .*@([0-9a-f]{40})$",
                (REPO / "docker" / "requirements-rlpyt.txt").read_text(), re.MULTILINE).group(1)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def run(src: Path, dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(src), str(dest)], capture_output=True,
                          text=True, timeout=60, check=False)


def rlpyt_like_tree(path: Path) -> Path:
    """A folder shaped like rlpyt's source (setup.py and the package)."""
    (path / "rlpyt").mkdir(parents=True)
    (path / "rlpyt" / "__init__.py").write_text("")
    (path / "setup.py").write_text("from setuptools import setup\nsetup(name='rlpyt')\n")
    return path


def test_a_plain_tree_is_copied_after_one_warning(tmp_path: Path) -> None:
    src = rlpyt_like_tree(tmp_path / "export")
    result = run(src, tmp_path / "dest")
    assert result.returncode == 0, result.stderr
    warning = (f"warning: RLPYT_SOURCE={src} is not a git checkout; its commit cannot be "
               f"checked against the pin {PIN[:12]}, building it as it is")
    assert result.stderr.strip().splitlines() == [warning]
    assert (tmp_path / "dest" / "setup.py").is_file()
    assert (tmp_path / "dest" / "rlpyt" / "__init__.py").is_file()


@needs_git
def test_a_checkout_at_another_commit_is_refused(tmp_path: Path) -> None:
    src = rlpyt_like_tree(tmp_path / "checkout")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "not the pin"], check=True)
    result = run(src, tmp_path / "dest")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"not the pinned {PIN[:12]}" in line
    assert f"git -C {src} checkout {PIN}" in line
    assert not (tmp_path / "dest" / "setup.py").exists()


def test_a_folder_that_is_not_rlpyt_is_refused(tmp_path: Path) -> None:
    result = run(tmp_path, tmp_path / "dest")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "is not an rlpyt source tree" in line and PIN in line


@needs_git
@pytest.mark.skipif(not os.environ.get("RLPYT_SOURCE"),
                    reason="RLPYT_SOURCE (an rlpyt checkout at the pinned commit) is not set")
def test_the_pinned_checkout_is_exported_at_the_pin(tmp_path: Path) -> None:
    result = run(Path(os.environ["RLPYT_SOURCE"]), tmp_path / "dest")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert (tmp_path / "dest" / "rlpyt" / "algos" / "dqn" / "dqn.py").is_file()
    assert not (tmp_path / "dest" / ".git").exists()
