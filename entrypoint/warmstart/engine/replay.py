"""Frame-based n-step replay for one env stream, as rlpyt's DQN samples it.

Each step stores the newest 104x80 frame once (about 8.3 KB) plus action, reward and done;
a sampled observation is rebuilt from the 4 frames ending at its step, with zeros for frames
before the latest ``done`` (the env zeroed its frame history there: a reset or a lost life).
Arrays come from ``np.zeros``, so the OS commits pages only as the buffer fills.

A step ``t`` can be sampled once step ``t + n`` is written (its n-step target) and while its
three history frames are still in the buffer. The n-step return sums discounted rewards up to
and including the first ``done``; ``done_n`` then stops the target from bootstrapping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psutil
import torch

from ..errors import ConfigError
from .batch import ReplayBatch
from .sum_tree import SumTree

PRIORITY_EPS = 1e-6  # rlpyt's guard in the importance weights


def _memory_available() -> int:
    """Bytes this process may still use: free RAM, capped by a cgroup (container) limit."""
    available = psutil.virtual_memory().available
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text())
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def check_memory(size: int) -> None:
    """Refuse a REPLAY_SIZE that cannot fit before filling it for hours and dying of OOM."""
    need = size * UniformReplay.bytes_per_transition()
    available = _memory_available()
    if need > 0.9 * available:
        raise ConfigError(
            f"REPLAY_SIZE={size} needs {need / 1e9:.1f} GB of memory (about "
            f"{UniformReplay.bytes_per_transition() / 1e3:.1f} KB per transition) but only "
            f"{available / 1e9:.1f} GB is available; lower REPLAY_SIZE or give the job more "
            "memory.")


class UniformReplay:
    """Samples valid steps uniformly, with replacement."""

    def __init__(self, size: int, *, num_img_obs: int = 4, frame_shape: tuple[int, int] = (104, 80),
                 n_step_return: int = 1, discount: float = 0.99, seed: int = 0) -> None:
        self.size = size
        self.history = num_img_obs - 1
        self.n_step = n_step_return
        self.frames = np.zeros((size, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros(size, dtype=np.int32)
        self.rewards = np.zeros(size, dtype=np.float32)
        self.dones = np.zeros(size, dtype=bool)
        self.written = 0  # steps appended since the buffer was made
        self.rng = np.random.default_rng(seed)
        self._discounts = discount ** np.arange(n_step_return, dtype=np.float64)

    @staticmethod
    def bytes_per_transition(num_img_obs: int = 4, frame_shape: tuple[int, int] = (104, 80)) -> int:
        """Memory one stored step costs (frame, action, reward, done; plus priority if used)."""
        return frame_shape[0] * frame_shape[1] + 4 + 4 + 1 + 16

    def __len__(self) -> int:
        return min(self.written, self.size)

    def _valid_range(self) -> tuple[int, int]:
        """Steps [low, high] whose n-step target is written and whose history is still here."""
        low = max(0, self.written - self.size + self.history)
        return low, self.written - 1 - self.n_step

    def can_sample(self) -> bool:
        low, high = self._valid_range()
        return high >= low

    def append(self, frame: np.ndarray, action: int, reward: float, done: bool) -> None:
        """Store one step: the newest frame of the observation ``action`` was taken at."""
        slot = self.written % self.size
        self.frames[slot] = frame
        self.actions[slot] = action
        self.rewards[slot] = reward
        self.dones[slot] = done
        self.written += 1

    def _stacks(self, steps: np.ndarray) -> np.ndarray:
        """Observations [B, 4, H, W] ending at ``steps``, zeroed before the latest done."""
        offsets = np.arange(-self.history, 1)
        times = steps[:, None] + offsets  # [B, 4], oldest first
        stacks = self.frames[times % self.size]
        # a done at step t-j (or t-j before the stream) blanks frame t-j and every older one
        blank = np.zeros(times.shape, dtype=bool)
        for j in range(1, self.history + 1):
            prior = steps - j
            ended = (prior < 0) | self.dones[prior % self.size]
            blank[:, : self.history - j + 1] |= ended[:, None]
        stacks[blank] = 0
        return stacks

    def _batch(self, steps: np.ndarray, is_weights: np.ndarray) -> ReplayBatch:
        ahead = steps[:, None] + np.arange(self.n_step)  # [B, n]
        rewards = self.rewards[ahead % self.size].astype(np.float64)
        dones = self.dones[ahead % self.size]
        # a step counts while no done came before it within the n steps
        alive = np.ones_like(dones)
        alive[:, 1:] = np.cumprod(~dones[:, :-1], axis=1).astype(bool)
        returns = (rewards * self._discounts * alive).sum(axis=1)
        done_n = dones.any(axis=1)
        return ReplayBatch(
            observation=torch.from_numpy(self._stacks(steps)),
            action=torch.from_numpy(self.actions[steps % self.size].astype(np.int64)),
            return_=torch.from_numpy(returns.astype(np.float32)),
            done_n=torch.from_numpy(done_n.astype(np.float32)),
            target_observation=torch.from_numpy(self._stacks(steps + self.n_step)),
            is_weights=torch.from_numpy(is_weights.astype(np.float32)),
            idxs=steps % self.size,
        )

    def sample(self, batch_size: int) -> ReplayBatch:
        low, high = self._valid_range()
        steps = self.rng.integers(low, high + 1, size=batch_size)
        return self._batch(steps, np.ones(batch_size))


class PrioritizedReplay(UniformReplay):
    """Proportional prioritized replay (rlpyt's): new steps get priority 1, then |TD error|.

    Priorities are stored raised to ``alpha``; importance weights are ``(1/p)**beta``
    normalised by the batch maximum, as rlpyt computes them. Steps that cannot be sampled yet
    (target not written) or any more (history overwritten) hold priority 0 in the tree.
    """

    def __init__(self, size: int, *, alpha: float = 0.6, beta: float = 0.4,
                 default_priority: float = 1.0, **kwargs) -> None:
        super().__init__(size, **kwargs)
        self.alpha = alpha
        self.beta = beta
        self.default_value = default_priority ** alpha
        self.tree = SumTree(size)

    def append(self, frame: np.ndarray, action: int, reward: float, done: bool) -> None:
        super().append(frame, action, reward, done)
        newest = self.written - 1
        invalid = [newest % self.size]
        if self.written > self.size:  # steps whose history this write overwrote
            invalid += [(newest + k) % self.size for k in range(1, self.history + 1)]
        self.tree.set(np.array(invalid), 0.0)
        ready = newest - self.n_step  # its n-step target just arrived
        low, _ = self._valid_range()
        if ready >= low:
            self.tree.set(ready % self.size, self.default_value)

    def _step_of_slot(self, slots: np.ndarray) -> np.ndarray:
        """Absolute step number stored in each slot (the latest write there)."""
        newest = self.written - 1
        return newest - ((newest - slots) % self.size)

    def sample(self, batch_size: int) -> ReplayBatch:
        slots = self.tree.sample(batch_size, self.rng)
        priorities = self.tree[slots]
        weights = (1.0 / (priorities + PRIORITY_EPS)) ** self.beta
        return self._batch(self._step_of_slot(slots), weights / weights.max())

    def update_priorities(self, idxs: np.ndarray, priorities: np.ndarray) -> None:
        """Feed back |TD error| for the sampled slots (rlpyt stores it to the power alpha)."""
        self.tree.set(idxs, np.asarray(priorities, dtype=np.float64) ** self.alpha)
