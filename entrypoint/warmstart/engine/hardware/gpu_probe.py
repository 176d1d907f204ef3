"""Is an NVIDIA GPU attached to this machine or container, whatever torch makes of it?

torch only says "no CUDA device"; on a node whose driver is older than torch's CUDA build that
hides a GPU that is right there. The evidence used here is what the container toolkit puts in a
container given a GPU: the device nodes ``/dev/nvidia0``, ``/dev/nvidia1``, ... and the driver
library ``libcuda.so.1``. ``NVIDIA_VISIBLE_DEVICES`` is not evidence: NVIDIA's base images set it
on every host. The paths are parameters so that tests can build a GPU-but-unusable machine in a
folder; ``GPU_PROBE_ROOT`` does the same for a whole ``warmstart`` process.
"""

from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass
from pathlib import Path

PROBE_ROOT_ENV = "GPU_PROBE_ROOT"
"""A folder standing in for ``/`` when looking for device nodes and the driver's version file."""

LIBCUDA = "libcuda.so.1"

# The oldest Linux driver branch each CUDA major version runs on (NVIDIA's CUDA Toolkit release
# notes, "minor version compatibility"): what a node needs for torch's CUDA build.
DRIVER_FLOOR = {11: "450", 12: "525", 13: "580"}


@dataclass(frozen=True)
class GpuEvidence:
    """What shows a GPU on this machine; empty when there is none."""

    device_nodes: tuple[str, ...]
    libcuda: bool
    driver_version: str | None
    """The kernel module's version (``580.65.06``), from /proc/driver/nvidia/version."""
    driver_cuda: str | None
    """The newest CUDA version the driver runs (``12.4``), from libcuda's cuDriverGetVersion."""

    @property
    def present(self) -> bool:
        return bool(self.device_nodes) or self.libcuda

    def describe(self) -> str:
        """``/dev/nvidia0, driver 535.183.01 for CUDA 12.2``: what was found, for one log line."""
        found = ", ".join(self.device_nodes) if self.device_nodes else f"{LIBCUDA} loaded"
        driver = " ".join(part for part in (
            "driver", self.driver_version, self.driver_cuda and f"for CUDA {self.driver_cuda}")
            if part)
        return f"{found}, {driver if driver != 'driver' else 'driver version unknown'}"


def probe_root() -> Path:
    """``/``, or the folder named by ``GPU_PROBE_ROOT`` (a simulated machine)."""
    return Path(os.environ.get(PROBE_ROOT_ENV) or "/")


def find_gpu(root: Path | None = None, libcuda: str | None = LIBCUDA) -> GpuEvidence:
    """Look for an NVIDIA GPU under ``root`` (default: :func:`probe_root`).

    ``libcuda`` is the driver library's name for the dynamic loader (``None`` skips it). It is
    only loaded, never initialised: ``cuDriverGetVersion`` needs no ``cuInit`` and no device.
    """
    root = probe_root() if root is None else root
    nodes = tuple(sorted(str(Path("/") / p.relative_to(root))
                         for p in (root / "dev").glob("nvidia[0-9]*")))
    driver_cuda = _libcuda_version(libcuda) if libcuda else None
    loaded = driver_cuda is not None
    return GpuEvidence(device_nodes=nodes, libcuda=loaded,
                       driver_version=_kernel_module_version(root), driver_cuda=driver_cuda)


def _kernel_module_version(root: Path) -> str | None:
    """``NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  ...`` -> ``535.183.01``."""
    try:
        text = (root / "proc" / "driver" / "nvidia" / "version").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def _libcuda_version(name: str) -> str | None:
    """The driver's CUDA version (``12.2``) through libcuda; ``None`` when it does not load.

    An empty string means libcuda loaded but would not say (an unusable library still shows a
    driver is installed).
    """
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    version = ctypes.c_int(0)
    try:
        status = lib.cuDriverGetVersion(ctypes.byref(version))
    except AttributeError:
        return ""
    if status != 0 or version.value <= 0:
        return ""
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def driver_floor(torch_cuda: str) -> str | None:
    """The oldest driver branch for torch's CUDA version (``13.0`` -> ``580``), where known."""
    try:
        return DRIVER_FLOOR.get(int(torch_cuda.split(".")[0]))
    except ValueError:
        return None
