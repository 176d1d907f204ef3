"""Where the network runs, how deterministically, and getting its tensors back to the CPU."""

from __future__ import annotations

import os
import platform
import warnings
from typing import Any

import torch

from ...config import Config
from ...errors import ConfigError, DeviceError
from .gpu_probe import GpuEvidence, driver_floor, find_gpu


def resolve_device(config: Config, gpu: GpuEvidence | None = None) -> torch.device:
    """DEVICE=auto picks CUDA when torch can use a GPU, and the CPU only where there is no GPU.

    A GPU that torch cannot use (a driver older than torch's CUDA build, or a CPU-only torch)
    stops DEVICE=auto and DEVICE=cuda with a DeviceError instead of a silent CPU run on a GPU
    node; DEVICE=cpu is how to train on the CPU there on purpose. ``gpu`` is what
    :func:`gpu_probe.find_gpu` found (looked up here when not given).
    """
    if config.device == "cpu" or _torch_sees_a_gpu():
        return torch.device("cuda" if config.device == "auto" else config.device)
    gpu = find_gpu() if gpu is None else gpu
    if gpu.present:
        raise DeviceError(unusable_gpu_message(config.device, gpu))
    if config.device == "cuda":
        raise ConfigError("DEVICE=cuda but this machine shows no NVIDIA GPU (no /dev/nvidia* "
                          "device, no libcuda.so.1): run with a GPU attached (docker run "
                          "--gpus all, a Kubernetes nvidia.com/gpu limit) or set DEVICE=cpu.")
    return torch.device("cpu")


def _torch_sees_a_gpu() -> bool:
    """torch.cuda.is_available() without torch's multi-line warning about an old driver: the
    DeviceError's one line says it with the versions and what to do."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.cuda.is_available()


def unusable_gpu_message(setting: str, gpu: GpuEvidence) -> str:
    """One line: which GPU is there, which CUDA torch was built for, and what to do."""
    head = f"DEVICE={setting}: a GPU is present ({gpu.describe()}) but torch {torch.__version__}"
    if torch.version.cuda is None:
        return (f"{head} is a CPU-only build and cannot use it; run the CUDA image, "
                f"or set DEVICE=cpu to train on the CPU.")
    floor = driver_floor(torch.version.cuda)
    needs = f"an NVIDIA driver {floor} or newer" if floor else "a newer NVIDIA driver"
    return (f"{head} is built for CUDA {torch.version.cuda} and cannot use it; it needs {needs}: "
            f"run on a node with such a driver, or set DEVICE=cpu to train on the CPU.")


def to_cpu(obj: Any) -> Any:
    """A copy of a (nested) state dict with every tensor on the CPU, as rlpyt snapshots hold."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return type(obj)((k, to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return obj


CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS reuses its workspace deterministically only with a fixed config (NVIDIA's docs)."""


def make_deterministic() -> None:
    """DETERMINISTIC=1: deterministic kernels wherever torch has them (GPU runs).

    On the CPU our runs repeat without it (same threads, same versions). An op without a
    deterministic kernel then raises instead of running nondeterministically.
    ``CUBLAS_WORKSPACE_CONFIG`` must be set before cuBLAS starts; a value already set is kept.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def reproducibility(device: torch.device, *, first_itr: int,
                    resume_state: Any | None) -> dict[str, Any]:
    """What besides the config and the versions decides this process's numbers, for the manifest.

    The thread count and the CPU's vector ISA pick torch's CPU kernels (and so the last bits of
    every sum); on a GPU, its model, CUDA, cuDNN and the determinism flags do.
    """
    info: dict[str, Any] = {
        "first_itr": first_itr,
        "exact_resume_from": None if resume_state is None else resume_state.path.name,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}",
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    if device.type == "cuda":
        info |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version()}
    return info
