"""What an exact resume saves of each engine part, and how it is put back: one pair per part.

The snapshot already holds the weights, the target network and Adam (with its step count, so
the target-copy phase); everything else that decides what happens next is here: every RNG, the
replay buffer (frames, actions, rewards, dones, the write cursor, its sampling generator, and
for prioritized replay the sum tree and beta), and the emulator. The engine adds its own
fields (the action generator, the current observation and trajectory, the schedule counters).
Arrays are returned as views where possible: they are streamed to disk, never copied whole.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from ...checkpoint.resume_state import ResumeState
from ..replays.replay import PrioritizedReplay, UniformReplay
from ..samplers.atari import EnvState
from ..samplers.envs import Envs

Part = tuple[dict[str, Any], dict[str, np.ndarray]]
"""(JSON-able meta, named arrays) of one part; array names carry the part's prefix."""


def rngs(device: torch.device) -> Part:
    """Python's, numpy's global and torch's generators (CPU, and the GPU's when it is used).

    Training draws from the engine's own generators; these are saved too so that nothing
    that could draw a number (a library, a future change) makes a resume silently diverge.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    arrays = {"rng/numpy_keys": keys, "rng/torch": torch.get_rng_state().numpy()}
    if device.type == "cuda":
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            arrays[f"rng/torch_cuda_{i}"] = state.numpy()
    meta = {"python": [version, list(internal), gauss],
            "numpy": [name, int(pos), int(has_gauss), float(cached)],
            "cuda_devices": torch.cuda.device_count() if device.type == "cuda" else 0}
    return meta, arrays


def restore_rngs(meta: dict[str, Any], saved: ResumeState, device: torch.device) -> None:
    """The GPU generators only on a GPU (a resume on another device is not exact anyway)."""
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, saved.array("rng/numpy_keys"), pos, has_gauss, cached))
    torch.set_rng_state(torch.from_numpy(saved.array("rng/torch")))
    if device.type == "cuda" and meta["cuda_devices"] == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.from_numpy(saved.array(f"rng/torch_cuda_{i}"))
                                      for i in range(meta["cuda_devices"])])


def envs(batch: Envs) -> Part:
    """Each environment's emulator state (its RNG included), frame stack, lives and counters."""
    meta, arrays = [], {}
    for b, state in enumerate(batch.states()):
        meta.append({"game": state.game, "lives": state.lives,
                     "step_counter": state.step_counter, "noop_rng": state.noop_rng})
        arrays |= {f"env/{b}/ale": np.frombuffer(state.ale, dtype=np.uint8),
                   f"env/{b}/frames": state.frames}
    return {"envs": meta}, arrays


def restore_envs(batch: Envs, meta: dict[str, Any], saved: ResumeState) -> None:
    """Put every environment back; a saved batch of another size does not fit (ValueError)."""
    batch.restore([EnvState(game=env["game"], ale=saved.array(f"env/{b}/ale").tobytes(),
                            frames=saved.array(f"env/{b}/frames"), lives=env["lives"],
                            step_counter=env["step_counter"], noop_rng=env["noop_rng"])
                   for b, env in enumerate(meta["envs"])])


def replay(buffer: UniformReplay) -> Part:
    """The filled part of the buffer, its cursor and generator; the tree and beta if prioritized."""
    filled = len(buffer)
    meta: dict[str, Any] = {"size": buffer.size, "streams": buffer.streams,
                            "written": buffer.written,
                            "rng": buffer.rng.bit_generator.state}
    arrays = {"replay/frames": buffer.frames[:filled], "replay/actions": buffer.actions[:filled],
              "replay/rewards": buffer.rewards[:filled], "replay/dones": buffer.dones[:filled]}
    if isinstance(buffer, PrioritizedReplay):
        meta["beta"] = buffer.beta
        arrays |= {f"replay/tree_{i}": level for i, level in enumerate(buffer.tree.levels)}
    return meta, arrays


def restore_replay(buffer: UniformReplay, meta: dict[str, Any], saved: ResumeState) -> None:
    """Fill ``buffer`` (freshly made, same size and kind) in place from the saved state."""
    prioritized = isinstance(buffer, PrioritizedReplay)
    streams = meta.get("streams", 1)  # a state from before streams were saved had one
    if (meta["size"], streams) != (buffer.size, buffer.streams) or ("beta" in meta) != prioritized:
        raise ValueError(f"saved replay ({meta['size']} rows of {streams}, prioritized "
                         f"{'beta' in meta}) does not fit this one ({buffer.size} rows of "
                         f"{buffer.streams}, prioritized {prioritized})")
    buffer.written = int(meta["written"])
    filled = len(buffer)
    for name in ("frames", "actions", "rewards", "dones"):
        saved.read_into(f"replay/{name}", getattr(buffer, name)[:filled])
    buffer.rng.bit_generator.state = meta["rng"]
    if prioritized:
        buffer.beta = float(meta["beta"])
        for i, level in enumerate(buffer.tree.levels):
            saved.read_into(f"replay/tree_{i}", level)
