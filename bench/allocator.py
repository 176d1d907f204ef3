"""glibc's malloc told to keep the memory torch frees, for timing the update alone.

An update allocates and frees the same tensors every time (activations, gradients, Adam's
temporaries; the largest 14 MB, the first linear layer's 6912x512 weight). In a fresh process
that has only built a model, glibc serves blocks that size with new mappings and hands freed
heap back to the kernel, so every timed update page-faults its 30 MB in again: about 7,400
minor faults and a third of the update's time on 2 AMD EPYC cores. A ``warmstart train``
process was measured at about 60 faults per update, so the component timings raise glibc's
mmap and trim thresholds to time the update as the engine meets it, not as a fresh process
does.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for it on 64-bit; above the 14 MB blocks
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where there is no glibc.

    On musl or macOS there is no ``mallopt`` with these meanings, and nothing is changed.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc's mallopt is the one meant here
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
