"""Where the network runs, and getting its tensors back to the CPU for a snapshot."""

from __future__ import annotations

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
