"""Where the network runs, how deterministically, and getting its tensors back to the CPU."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from ..config import Config
from ..errors import ConfigError


def resolve_device(config: Config) -> torch.device:
    """DEVICE=auto picks CUDA when torch sees a GPU; DEVICE=cuda without one is a config error."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("DEVICE=cuda but no CUDA device is visible to torch; use DEVICE=cpu "
                          "or DEVICE=auto, or run the CUDA image with a GPU attached.")
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


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
