"""The benchmark's malloc setting: memory an update frees is reused without page faults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
from conftest import REPO

# Three 16 MB blocks allocated, written and freed, as an update's large temporaries are; the
# third round's minor page faults are counted. By default glibc hands the freed top of the
# heap back to the kernel, so each round faults its pages in again.
ROUNDS = """
import resource, sys
import numpy as np
from allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
def round_():
    blocks = [np.ones(4 * 2**20, np.float32) for _ in range(3)]
    del blocks
round_(); round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", ROUNDS, mode], cwd=REPO / "bench",
                            capture_output=True, text=True, timeout=60, check=True)
    return int(result.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    assert default > 100, "glibc's default should return the freed blocks to the kernel"
    assert tuned < default / 10
