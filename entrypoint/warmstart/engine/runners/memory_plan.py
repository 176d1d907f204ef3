"""What a run will need of the machine's memory, against what the process may use, checked
when the start point knows the run's span and before anything is written.

The numpy replay's pages are committed as it fills, so a REPLAY_SIZE too large for the
container would train for hours and then be OOM-killed (exit 137, no final snapshot). Here
the need is the replay at the size it will reach by the run's target (a restored replay
included), the update's batch, the model with its target, gradients, Adam moments and a
snapshot's copies, the trainer itself and its environment workers. On a GPU, the device
replay takes its whole REPLAY_SIZE at once, on the device when it fits beside
``device_replay.MARGIN_BYTES`` (else in pinned host memory, counted against the host). The
workers' shared buffer lives in the temporary folder (``/dev/shm`` where that is the one
``runtime_dirs`` chose) and is checked against its free space.

Every start logs the plan; a plan above ``FILL`` of the limit is one ``ConfigError`` (exit 2)
naming the settings that make it large, the need and the limit.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...checkpoint.start import Plan
from ...checkpoint.volume import snapshot_bytes
from ...errors import ConfigError
from ..hardware.memory import MemoryLimit, memory_limit
from ..replays.device_replay import MARGIN_BYTES
from ..replays.replay import UniformReplay
from ..samplers.env_worker import SharedBatch
from ..samplers.workers import worker_count

GiB = 1 << 30
TRAINER_BYTES = 512 << 20
"""Python, torch, numpy, the emulator and evaluation env in the trainer: about 320 MB
measured after the first update at batch 32, rounded up."""
WORKER_BYTES = 200 << 20
"""One environment worker process (a fresh interpreter with numpy, cv2 and the emulator)."""
BATCH_BYTES_PER_SAMPLE = 1 << 20
"""One sample of an update: its frames (uint8 and float), the forward passes of the online
and target networks and the backward pass; 0.78 MB measured per sample at batch 1024 on the
CPU, rounded up."""
MODEL_COPIES = 3
"""A snapshot's size (model, target, Adam's two moments) three times over: the live model,
target, gradients and moments, a snapshot's CPU copy of them, and its serialised bytes."""
FILL = 0.9
"""The share of the limit a plan may take: the rest is page cache and allocator slack."""


@dataclass(frozen=True)
class Need:
    """What a run needs: host bytes by part (with the settings that size it), device bytes."""

    host: dict[str, tuple[int, str]]  # part -> (bytes, the settings that size it)
    device: int  # bytes on the GPU (the device replay), 0 on the CPU
    shared: int  # bytes of the workers' shared buffer in the temporary folder

    @property
    def host_bytes(self) -> int:
        return sum(b for b, _ in self.host.values())


def need(plan: Plan, *, engine: str, device_type: str, n_actions: int,
         device_free: int | None = None) -> Need:
    """What ``plan`` needs, part by part. ``device_free``: the GPU's free bytes (cuda)."""
    config, shape = plan.config, plan.budget.shape
    per_transition = UniformReplay.bytes_per_transition()
    device = 0
    host: dict[str, tuple[int, str]] = {}
    whole = config.replay_size * per_transition
    device_replay = (engine == "native" and device_type == "cuda"
                     and not config.prioritized_replay and config.resume_state == "off")
    if device_replay and device_free is not None and whole + MARGIN_BYTES <= device_free:
        device = whole
        host["replay"] = (0, (f"on the GPU: REPLAY_SIZE={config.replay_size:,} "
                              f"({whole / GiB:.1f} GiB of GPU memory)"))
    elif device_replay:
        host["replay"] = (whole, (f"REPLAY_SIZE={config.replay_size:,} in pinned host memory, "
                                  "all at once"))
    else:
        reach = plan.replay_transitions
        host["replay"] = (reach * per_transition,
                          (f"{reach:,} transitions by the run's target, of "
                           f"REPLAY_SIZE={config.replay_size:,}"))
    host["batch"] = (config.batch_size * BATCH_BYTES_PER_SAMPLE, f"BATCH_SIZE={config.batch_size}")
    host["model"] = (MODEL_COPIES * snapshot_bytes(n_actions, config.dueling),
                     "model, target, Adam and a snapshot's copies")
    workers = min(config.env_workers or worker_count(shape.batch_B), shape.batch_B)
    if workers > 1:
        host["workers"] = (workers * WORKER_BYTES,
                           f"{workers} env workers (ENV_WORKERS, BATCH_B={shape.batch_B})")
    host["trainer"] = (TRAINER_BYTES, "Python and torch")
    shared = SharedBatch.nbytes(shape.batch_B) if workers > 1 else 0
    return Need(host=host, device=device, shared=shared)


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def check(plan: Plan, *, engine: str, device_type: str, n_actions: int,
          log: Callable[[str], None], limit: MemoryLimit | None = None,
          device_free: int | None = None, temp_dir: Path | None = None) -> Need:
    """Log the plan (need vs limit) and refuse, before anything is written, one that cannot
    fit; returns the need."""
    if device_type == "cuda" and device_free is None:
        import torch

        device_free = torch.cuda.mem_get_info()[0]
    limit = limit or memory_limit()
    found = need(plan, engine=engine, device_type=device_type, n_actions=n_actions,
                 device_free=device_free)
    parts = " + ".join(f"{name} {_gib(b)} ({why})" for name, (b, why) in found.host.items())
    log(f"memory plan: {parts} = {_gib(found.host_bytes)} of the {_gib(limit.bytes)} this "
        f"process may use ({limit.source})")
    if found.host_bytes > FILL * limit.bytes:
        large = sorted(((b, why) for b, why in found.host.values()), reverse=True)
        raise ConfigError(
            f"this run needs about {_gib(found.host_bytes)} of memory, more than "
            f"{FILL:.0%} of the {_gib(limit.bytes)} this process may use ({limit.source}): "
            f"{'; '.join(f'{_gib(b)} for {why}' for b, why in large[:3] if b)}. Lower "
            "REPLAY_SIZE (or STEPS, BATCH_SIZE, ENV_WORKERS), or give the job more memory.")
    folder = temp_dir or Path(tempfile.gettempdir())
    if found.shared:
        free = shutil.disk_usage(folder).free
        if found.shared > FILL * free:
            raise ConfigError(
                f"the env workers' shared buffer for BATCH_B={plan.budget.shape.batch_B} needs "
                f"{found.shared / 2**20:.1f} MiB in {folder}, which has "
                f"{free / 2**20:.1f} MiB free; lower BATCH_B or ENV_WORKERS=1, or give "
                f"{folder} more room (Docker: --shm-size).")
    return found
