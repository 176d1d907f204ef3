"""The CUDA path's update measured alone: GPU time, kernel launches and host syncs.

The update is the engine's own (``StaticUpdate``, captured as a CUDA graph as ``CUDA_GRAPH=1``
runs it) on minibatches drawn by the engine's device replay, filled with real frames. Three
numbers: GPU time per update (CUDA events around replays), GPU operations per update (the
profiler's CUDA events: kernels, and the copies of the batch into the graph's inputs), and host
syncs per update with its
draw (torch's sync debug mode warns at each synchronising call; they are counted).
"""

from __future__ import annotations

import warnings
from typing import Any

import limits
import torch
from warmstart.engine.agents.model import AtariDqnModel
from warmstart.engine.algos.dqn import DqnLearner, make_optimizer
from warmstart.engine.algos.static_update import WARMUP_UPDATES, StaticUpdate
from warmstart.engine.replays.device_replay import DeviceReplay
from warmstart.engine.replays.replay import UniformReplay
from warmstart.games import minimal_action_count


def _device_replay(replay: UniformReplay, device: torch.device) -> DeviceReplay:
    """``replay``'s stored steps (one stream) copied into a device replay of the same size."""
    out = DeviceReplay(len(replay.frames), device=device)
    filled = len(replay)
    for name in ("frames", "actions", "rewards", "dones"):
        getattr(out, name)[:filled] = torch.from_numpy(getattr(replay, name)[:filled]).to(device)
    out.written = replay.written
    return out


def measure(device_name: str, quick: bool) -> dict[str, dict[str, Any]]:
    """The captured update at example 1's batch (32) and rlpyt configs["dqn"]'s (128), on a
    replay of real pong frames; meant for a fresh process, as bench/limits.py's rates."""
    device = torch.device(device_name)
    replay = UniformReplay(20_000)
    limits.fill_replay("pong", 2_000 if quick else 20_000, replay)
    n_actions = minimal_action_count("pong")
    return {str(size): graphed_update(replay, n_actions, device, batch_size=size)
            for size in (32, 128)}


def graphed_update(replay: UniformReplay, n_actions: int, device: torch.device, *,
                   batch_size: int = 32, count: int = 50) -> dict[str, Any]:
    """GPU seconds, kernel launches and host syncs per update of the captured update."""
    model = AtariDqnModel(n_actions).to(device)
    target = AtariDqnModel(n_actions).to(device)
    target.load_state_dict(model.state_dict())
    learner = DqnLearner(model, target, make_optimizer(model, 2.5e-4, batch_size,
                                                       capturable=True),
                         discount=0.99, target_update_interval=312)
    lines: list[str] = []
    update = StaticUpdate(learner, batch_size, device, graph=True, log=lines.append)
    source = _device_replay(replay, device)
    for _ in range(WARMUP_UPDATES + 1):
        update.run(source.sample(batch_size))
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    batches = [source.sample(batch_size) for _ in range(count)]
    gpu_s = 0.0
    for batch in batches:
        start.record()
        update.run(batch)
        end.record()
        torch.cuda.synchronize(device)
        gpu_s += start.elapsed_time(end) / 1e3
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        for _ in range(10):
            update.run(source.sample(batch_size))
        torch.cuda.synchronize(device)
    kernels = sum(1 for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(10):
                update.run(source.sample(batch_size))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = sum(1 for w in caught if "synchroniz" in str(w.message))
    return {"gpu_s_per_update": gpu_s / count, "kernels_per_update": kernels / 10,
            "host_syncs_per_update": syncs / 10, "graphed": update.graphed,
            "log": "; ".join(lines)}
