"""Frame-based n-step replay of ``streams`` environments stepped together, as rlpyt's DQN
replays its ``[T, B]`` frame buffer.

Memory: every step stores its newest 104x80 frame once (8,320 bytes) plus action, reward and
done, instead of two 4-frame observations; 1M steps fit in about 8.3 GB. Arrays come from
``np.zeros``, so the OS commits their pages only as the buffer fills.

Layout: row ``t`` (of ``size`` rows) holds time step ``t`` of every stream modulo ``size``,
stream ``b`` in slot ``t * streams + b``: the newest frame of the observation the action was
taken at, the action, and the reward and done that ``env.step`` returned. Every offset in time
below is a whole number of rows, so frame stacks and n-step returns stay inside one stream;
with one stream a slot is a step, as rlpyt's example 1 stores it. The observation of slot ``i`` is rebuilt from the frames of slots ``i-3 .. i``; a
done at slot ``d`` in ``i-3 .. i-1`` blanks frame ``d`` and every older one, because the env
zeroed its frame history there (a reset, or a lost life with episodic lives). rlpyt's
``NStepFrameBuffer`` rebuilds observations the same way.

Which slots can be drawn (rlpyt's ``off_backward`` / ``off_forward``, with ``f = max(1,
num_img_obs - 1)`` and ``n = n_step_return``): not the ``n`` newest steps, whose n-step
target is not written yet; not the ``f`` oldest ones, whose history frames the cursor has
overwritten; and, until the buffer first wraps, not steps ``0 .. f-1`` either. The last rule is rlpyt's start-up guard, kept so that the set of
sampleable steps is the same as rlpyt's at every step.

Rows are drawn uniformly from the sampleable ones and, with more than one stream, a stream
uniformly for each (rlpyt's ``T_idxs`` and ``B_idxs``). The n-step return and ``done_n`` are
computed from the stored rewards when a batch is drawn,
with rlpyt's float32 arithmetic (``return += float32(discount**k) * reward[k] * (1 -
done_n)``); rlpyt computes the same numbers when steps are appended, which only moves the
work.
"""

from __future__ import annotations

import numpy as np
import torch

from .batch import ReplayBatch
from .sum_tree import SumTree

PRIORITY_EPS = 1e-6  # rlpyt keeps a zero priority from giving an infinite importance weight


class ReplayRows:
    """The row layout both replays share (rlpyt's ``[T, B]`` buffer, flattened): ``size``
    rows of ``streams`` slots, written row by row, and which rows hold a complete n-step
    transition of ``num_img_obs`` frames."""

    def __init__(self, size: int, *, num_img_obs: int, n_step_return: int,
                 streams: int) -> None:
        """``size`` transitions in all: ``size // streams`` rows of ``streams`` (as rlpyt)."""
        if num_img_obs < 1 or n_step_return < 1 or streams < 1:
            raise ValueError("num_img_obs, n_step_return and streams must be at least 1")
        self.off_forward = max(1, num_img_obs - 1)
        rows = size // streams
        if rows <= n_step_return + self.off_forward:
            raise ValueError(f"a replay of {rows} rows holds no complete "
                             f"{n_step_return}-step transition of {num_img_obs} frames")
        self.size = rows
        self.streams = streams
        self.num_img_obs = num_img_obs
        self.n_step_return = n_step_return
        self.written = 0  # rows appended since the buffer was made; the cursor is written % size

    def __len__(self) -> int:
        """Transitions currently stored (sampleable or not), in the first slots."""
        return min(self.written, self.size) * self.streams

    def _step_range(self) -> tuple[int, int]:
        """Sampleable rows, counted from the start of the streams: ``[low, high)``."""
        low = self.off_forward + max(0, self.written - self.size)
        return low, self.written - self.n_step_return

    def can_sample(self) -> bool:
        """Whether at least one slot holds a complete n-step transition."""
        low, high = self._step_range()
        return high > low


class UniformReplay(ReplayRows):
    """Draws sampleable slots uniformly, with replacement (rlpyt's ``UniformReplayFrameBuffer``).

    A batch's observation tensors are views of an output array that the next ``sample()``
    (or ``batch_at()``) call overwrites: move or copy a batch before drawing the next one.
    """

    def __init__(self, size: int, *, num_img_obs: int = 4,
                 frame_shape: tuple[int, int] = (104, 80), n_step_return: int = 1,
                 discount: float = 0.99, seed: int = 0, streams: int = 1) -> None:
        super().__init__(size, num_img_obs=num_img_obs, n_step_return=n_step_return,
                         streams=streams)
        slots = self.size * streams
        self.frames = np.zeros((slots, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros(slots, dtype=np.int32)
        self.rewards = np.zeros(slots, dtype=np.float32)
        self.dones = np.zeros(slots, dtype=bool)
        self.rng = np.random.default_rng(seed)
        # rlpyt multiplies a float32 reward by the Python float discount**k: float32 arithmetic.
        self._discounts = np.array([discount ** k for k in range(n_step_return)],
                                   dtype=np.float32)
        # offsets in slots of whole rows: a stack or a return never crosses into another stream
        self._frame_offsets = np.arange(1 - num_img_obs, 1) * streams  # oldest frame first
        self._done_offsets = np.arange(1 - num_img_obs, 0) * streams  # the steps before the newest
        self._return_offsets = np.arange(n_step_return) * streams
        self._out = np.empty((0, num_img_obs, *frame_shape), dtype=np.uint8)

    @staticmethod
    def bytes_per_transition(frame_shape: tuple[int, int] = (104, 80)) -> int:
        """Upper bound on the memory one stored step costs, for the check before allocating.

        Frame, action (int32), reward (float32), done (bool), and the prioritized replay's sum
        tree (a float64 leaf, plus under 1% for the levels above and the padding, rounded up
        to a second float64). The number of stacked frames does not matter: each frame is
        stored once.
        """
        return frame_shape[0] * frame_shape[1] + 4 + 4 + 1 + 2 * 8

    def _slots(self, rows: np.ndarray) -> np.ndarray:
        """Every stream's slot of ``rows`` (row-major: row by row, streams in order)."""
        return (np.asarray(rows)[:, None] * self.streams + np.arange(self.streams)).ravel()

    def valid_idxs(self) -> np.ndarray:
        """The slots ``sample`` may return now, in time order."""
        low, high = self._step_range()
        return self._slots(np.arange(low, max(low, high)) % self.size)

    def append(self, frame: np.ndarray, action: int | np.ndarray, reward: float | np.ndarray,
               done: bool | np.ndarray) -> None:
        """Store one time step of every stream (index ``b`` for stream ``b``; plain values
        for one stream).

        ``frame`` is the newest frame of the observation ``action`` was taken at; ``reward``
        and ``done`` are what ``env.step(action)`` returned (a lost life counts as done).
        """
        first = self.written % self.size * self.streams
        row = slice(first, first + self.streams)
        self.frames[row] = frame
        self.actions[row] = action
        self.rewards[row] = reward
        self.dones[row] = done
        self.written += 1

    def sample(self, batch_size: int) -> ReplayBatch:
        """A minibatch of ``batch_size`` transitions; importance weights are all one."""
        if not self.can_sample():
            raise ValueError("the replay holds no complete transition to sample yet")
        low, high = self._step_range()
        slots = self.rng.integers(low, high, size=batch_size) % self.size * self.streams
        if self.streams > 1:
            slots += self.rng.integers(0, self.streams, size=batch_size)
        return self.batch_at(slots)

    def batch_at(self, idxs: np.ndarray) -> ReplayBatch:
        """The transitions at slots ``idxs``, exactly as ``sample`` returns them when it draws them.

        The caller vouches that every slot is sampleable (see ``valid_idxs``).
        """
        idxs = np.asarray(idxs, dtype=np.int64)
        count = len(idxs)
        targets = (idxs + self.n_step_return * self.streams) % len(self.frames)
        stacks = self._stacks(np.concatenate([idxs, targets]))
        rewards = self.rewards.take(idxs[:, None] + self._return_offsets, mode="wrap")
        dones = self.dones.take(idxs[:, None] + self._return_offsets, mode="wrap")
        return_ = rewards[:, 0].copy()
        done_n = dones[:, 0].copy()
        for k in range(1, self.n_step_return):  # cut at the first done, which still counts
            return_ += self._discounts[k] * rewards[:, k] * ~done_n
            done_n |= dones[:, k]
        return ReplayBatch(
            observation=torch.from_numpy(stacks[:count]),
            action=torch.from_numpy(self.actions[idxs].astype(np.int64)),
            return_=torch.from_numpy(return_),
            done_n=torch.from_numpy(done_n.astype(np.float32)),
            target_observation=torch.from_numpy(stacks[count:]),
            is_weights=torch.from_numpy(self._is_weights(idxs)),
            idxs=idxs,
        )

    def _is_weights(self, idxs: np.ndarray) -> np.ndarray:
        """Uniform draws need no correction."""
        return np.ones(len(idxs), dtype=np.float32)

    def _stacks(self, idxs: np.ndarray) -> np.ndarray:
        """Observations ``[len(idxs), num_img_obs, H, W]`` ending at slots ``idxs``.

        Gathered straight into the reused output array (no per-item loop, no temporary
        copy); frames from before a done inside the window are zeroed, as the env showed them.
        """
        if len(self._out) != len(idxs):
            self._out = np.empty((len(idxs), *self._out.shape[1:]), dtype=np.uint8)
        self.frames.take(idxs[:, None] + self._frame_offsets, axis=0, out=self._out,
                         mode="wrap")
        if self.num_img_obs > 1:
            dones = self.dones.take(idxs[:, None] + self._done_offsets, mode="wrap")
            # frame j is blank when any step from j to the one before the newest was done
            blank = np.logical_or.accumulate(dones[:, ::-1], axis=1)[:, ::-1]
            self._out[:, :-1][blank] = 0
        return self._out


class PrioritizedReplay(UniformReplay):
    """Proportional prioritized replay (rlpyt's ``PrioritizedReplayFrameBuffer``).

    The sum tree's leaves hold ``priority ** alpha``. A slot becomes sampleable with
    ``default_priority ** alpha`` (rlpyt's DQN passes ``default_priority = delta_clip``, 1.0;
    not the running maximum) once its n-step target is written, and drops to zero when it
    stops being sampleable, so draws never need a validity check. Importance weights are
    ``(1 / (leaf + 1e-6)) ** beta`` divided by the batch's largest; ``beta`` is set by the
    caller as training goes (rlpyt's ``set_beta``).
    """

    def __init__(self, size: int, *, alpha: float = 0.6, beta: float = 0.4,
                 default_priority: float = 1.0, **kwargs) -> None:
        super().__init__(size, **kwargs)
        self.alpha = alpha
        self.beta = beta
        self.default_value = default_priority ** alpha
        self.tree = SumTree(len(self.frames))

    def append(self, frame: np.ndarray, action: int | np.ndarray, reward: float | np.ndarray,
               done: bool | np.ndarray) -> None:
        """Store one time step; switch off the rows it makes unsampleable, on the one it
        completes (every stream's slot of them)."""
        super().append(frame, action, reward, done)
        newest = self.written - 1
        # Off: rows newest+1-n .. newest await their targets, and rows newest+1 ..
        # newest+f (mod size) hold the oldest steps, whose history this write overwrote.
        # On: row newest-n, whose n-step target just arrived, unless the start-up guard
        # holds it off (it is then a row not yet written, or one of 0 .. f-1: zero already).
        completed = newest - self.n_step_return
        slots = self._slots(np.arange(completed, newest + 1 + self.off_forward) % self.size)
        values = np.zeros(len(slots))
        values[:self.streams] = self.default_value if completed >= self.off_forward else 0.0
        self.tree.set(slots, values)

    def sample(self, batch_size: int) -> ReplayBatch:
        """``batch_size`` slots drawn with replacement in proportion to their priority."""
        if not self.can_sample():
            raise ValueError("the replay holds no complete transition to sample yet")
        return self.batch_at(self.tree.sample(batch_size, self.rng))

    def _is_weights(self, idxs: np.ndarray) -> np.ndarray:
        """rlpyt's importance weights: computed in float64, normalised by the batch maximum."""
        weights = (1.0 / (self.tree[idxs] + PRIORITY_EPS)) ** self.beta
        return (weights / weights.max()).astype(np.float32)

    def update_priorities(self, idxs: np.ndarray, priorities: np.ndarray) -> None:
        """Store ``priority ** alpha`` for sampled slots (the learner's clamped |TD error|).

        As in rlpyt: the power is taken in float32 (rlpyt gets the errors as a float32
        tensor), and a slot drawn twice in a batch keeps its first value. A slot that has
        stopped being sampleable since it was drawn is left at zero.
        """
        slots, first = np.unique(np.asarray(idxs, dtype=np.int64), return_index=True)
        values = np.asarray(priorities, dtype=np.float32)[first] ** np.float32(self.alpha)
        live = self.tree[slots] > 0
        self.tree.set(slots[live], values[live])
