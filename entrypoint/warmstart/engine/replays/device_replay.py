"""The uniform frame replay kept in torch tensors, for a GPU: frames on the device when they
fit, else in pinned host memory, and minibatch slots drawn by a torch generator on the device.

Same layout and same logic as ``replay.UniformReplay`` (read its docstring): slot ``t *
streams + b``, stacks of ``num_img_obs`` frames blanked before a done, n-step returns cut at
the first done with rlpyt's float32 arithmetic, the same sampleable rows. Only the random
draws differ (torch's generator instead of numpy's), so on the CPU the numpy replay stays the
one that runs (its draws are what exact resume and the determinism tests replay); this class
runs with ``device="cpu"`` in the tests, which check it gives the numpy replay's batch for
the same slots.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .batch import ReplayBatch
from .replay import ReplayRows, UniformReplay

MARGIN_BYTES = 4 << 30
"""Device memory left free beside the replay: the model, target, Adam moments, the update's
activations and cuDNN workspaces take well under 1 GiB at batch 128; the rest is headroom."""


def storage_for(size: int, device: torch.device, log: Callable[[str], None]) -> bool:
    """Whether a replay of ``size`` transitions fits in ``device``'s free memory with
    ``MARGIN_BYTES`` to spare (said in the log either way)."""
    need = size * UniformReplay.bytes_per_transition()
    free, _total = torch.cuda.mem_get_info(device)
    fits = need + MARGIN_BYTES <= free
    where = "on the GPU" if fits else "in pinned host memory (asynchronous copies)"
    log(f"replay of {size:,} transitions ({need / 1e9:.1f} GB) kept {where}: {free / 1e9:.1f} GB "
        f"of GPU memory free, {MARGIN_BYTES / 2**30:.0f} GiB kept aside")
    return fits


class DeviceReplay(ReplayRows):
    """``UniformReplay`` in tensors on ``storage`` (a device, or pinned host memory for
    ``device``), handing out batches on ``device``.

    A batch's tensors are reused by the next ``sample``: the learner copies them into its own
    inputs before the next draw, as it does with the numpy replay's batches.
    """

    def __init__(self, size: int, *, device: torch.device, on_device: bool = True,
                 num_img_obs: int = 4, frame_shape: tuple[int, int] = (104, 80),
                 n_step_return: int = 1, discount: float = 0.99, seed: int = 0,
                 streams: int = 1) -> None:
        super().__init__(size, num_img_obs=num_img_obs, n_step_return=n_step_return,
                         streams=streams)
        self.device = device
        storage = device if on_device else torch.device("cpu")
        pin = not on_device and device.type == "cuda"
        slots = self.size * streams
        self.frames = torch.zeros((slots, *frame_shape), dtype=torch.uint8, device=storage,
                                  pin_memory=pin)
        self.actions = torch.zeros(slots, dtype=torch.int64, device=storage, pin_memory=pin)
        self.rewards = torch.zeros(slots, dtype=torch.float32, device=storage, pin_memory=pin)
        self.dones = torch.zeros(slots, dtype=torch.bool, device=storage, pin_memory=pin)
        self.generator = torch.Generator(storage).manual_seed(seed)
        self._storage = storage
        self._discounts = [np.float32(discount ** k) for k in range(n_step_return)]
        self._frame_offsets = torch.arange(1 - num_img_obs, 1, device=storage) * streams
        self._done_offsets = torch.arange(1 - num_img_obs, 0, device=storage) * streams
        self._return_offsets = torch.arange(n_step_return, device=storage) * streams

    def append(self, frame: np.ndarray, action: int | np.ndarray, reward: float | np.ndarray,
               done: bool | np.ndarray) -> None:
        """Store one time step of every stream, as ``UniformReplay.append``."""
        first = self.written % self.size * self.streams
        row = slice(first, first + self.streams)
        self.frames[row] = torch.as_tensor(np.asarray(frame)).to(self._storage)
        self.actions[row] = torch.as_tensor(np.asarray(action, dtype=np.int64)).to(self._storage)
        self.rewards[row] = torch.as_tensor(np.asarray(reward, dtype=np.float32)).to(
            self._storage)
        self.dones[row] = torch.as_tensor(np.asarray(done, dtype=bool)).to(self._storage)
        self.written += 1

    def sample_slots(self, batch_size: int) -> torch.Tensor:
        """``batch_size`` sampleable slots drawn uniformly with replacement, where the frames
        are (rows uniformly, then a stream uniformly for each, as the numpy replay)."""
        if not self.can_sample():
            raise ValueError("the replay holds no complete transition to sample yet")
        low, high = self._step_range()
        rows = torch.randint(low, high, (batch_size,), generator=self.generator,
                             device=self._storage)
        slots = rows % self.size * self.streams
        if self.streams > 1:
            slots += torch.randint(0, self.streams, (batch_size,), generator=self.generator,
                                   device=self._storage)
        return slots

    def sample(self, batch_size: int) -> ReplayBatch:
        return self.batch_at(self.sample_slots(batch_size))

    def batch_at(self, idxs: torch.Tensor) -> ReplayBatch:
        """The transitions at slots ``idxs`` (sampleable ones), on ``device``."""
        idxs = idxs.to(self._storage, torch.int64)
        count, slots = len(idxs), len(self.frames)
        targets = (idxs + self.n_step_return * self.streams) % slots
        stacks = self._stacks(torch.cat([idxs, targets]))
        window = (idxs[:, None] + self._return_offsets) % slots
        rewards, dones = self.rewards[window], self.dones[window]
        return_ = rewards[:, 0].clone()
        done_n = dones[:, 0].clone()
        for k in range(1, self.n_step_return):  # cut at the first done, which still counts
            return_ += self._discounts[k].item() * rewards[:, k] * ~done_n
            done_n |= dones[:, k]
        batch = ReplayBatch(
            observation=stacks[:count], action=self.actions[idxs], return_=return_,
            done_n=done_n.float(), target_observation=stacks[count:],
            is_weights=torch.ones(count, dtype=torch.float32, device=self._storage), idxs=idxs)
        if self._storage == self.device:
            return batch
        return ReplayBatch(*(t.pin_memory().to(self.device, non_blocking=True)
                             if isinstance(t, torch.Tensor) else t for t in batch))

    def _stacks(self, idxs: torch.Tensor) -> torch.Tensor:
        """Observations ``[len(idxs), num_img_obs, H, W]`` ending at ``idxs``, frames before a
        done in the window zeroed."""
        slots = len(self.frames)
        stacks = self.frames[(idxs[:, None] + self._frame_offsets) % slots]
        if self.num_img_obs > 1:
            dones = self.dones[(idxs[:, None] + self._done_offsets) % slots]
            # frame j is blank when any step from j to the one before the newest was done
            blank = dones.flip(1).cumsum(1).flip(1) > 0
            # masked_fill_, not boolean indexing: indexing by a mask reads its count on the host
            stacks[:, :-1].masked_fill_(blank[:, :, None, None], 0)
        return stacks
