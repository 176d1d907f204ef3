"""A sum tree over flat float64 arrays: proportional draws and priority writes in O(log n).

The tree is 128-ary rather than binary: each level is one flat array whose consecutive
blocks of ``FANOUT`` entries are the children of one entry of the level above. A batch is
handled level by level with a few numpy operations each, so a million leaves cost three
levels of vector work instead of twenty, which is what makes a per-step priority write
cheap next to an env step. Draws have the same distribution as a binary tree's: leaf ``i``
with probability ``priority_i / total``.

A parent is recomputed from its children on every write (never adjusted by a difference, as
rlpyt does): round-off cannot accumulate, and every parent is exactly the running sum of its
children that ``find`` walks through. Float64 throughout, for rlpyt's reason: in float32 the
descent can overshoot the remaining mass onto a zero-priority leaf.
"""

from __future__ import annotations

import numpy as np

FANOUT = 128


class SumTree:
    """Leaves hold non-negative priorities (already raised to alpha); draws follow their mass."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a sum tree needs at least one leaf, not {size}")
        self.size = size
        # levels[0] holds the leaves, levels[-1] the root; every level but the root is
        # padded with zeros to whole blocks of FANOUT. np.zeros: pages commit as written.
        self.levels = []
        count = size
        while True:
            blocks = -(-count // FANOUT)
            self.levels.append(np.zeros(blocks * FANOUT, dtype=np.float64))
            count = blocks
            if count == 1:
                break
        self.levels.append(np.zeros(1, dtype=np.float64))

    @property
    def total(self) -> float:
        """Sum of all leaves (the root)."""
        return float(self.levels[-1][0])

    def leaves(self) -> np.ndarray:
        """A read-only view of the ``size`` leaf priorities."""
        view = self.levels[0][:self.size]
        view.flags.writeable = False
        return view

    def __getitem__(self, idxs: np.ndarray) -> np.ndarray:
        return self.levels[0][idxs]

    def set(self, idxs: np.ndarray, values: np.ndarray | float) -> None:
        """Write leaves ``idxs`` (unique) and recompute every sum on their paths to the root.

        A parent shared by several written leaves is recomputed once per leaf, each time from
        its final children, so duplicate parents are harmless and need no ``unique``.
        """
        nodes = np.asarray(idxs, dtype=np.int64).reshape(-1)
        self.levels[0][nodes] = values
        for below, above in zip(self.levels[:-1], self.levels[1:]):
            nodes = nodes // FANOUT
            above[nodes] = below.reshape(-1, FANOUT)[nodes].cumsum(axis=1)[:, -1]

    def find(self, masses: np.ndarray) -> np.ndarray:
        """The leaf whose cumulative-priority interval ``[start, end)`` holds each mass.

        A mass in ``[0, total)`` always ends on a leaf with positive priority, up to
        round-off in the subtraction at each level.
        """
        remaining = np.array(masses, dtype=np.float64)
        rows = np.arange(len(remaining))
        nodes = np.zeros(len(remaining), dtype=np.int64)
        starts = np.zeros((len(remaining), FANOUT + 1))  # starts[:, j]: mass before child j
        for below in reversed(self.levels[:-1]):
            np.cumsum(below.reshape(-1, FANOUT)[nodes], axis=1, out=starts[:, 1:])
            child = (starts[:, 1:FANOUT] <= remaining[:, None]).sum(axis=1)
            remaining -= starts[rows, child]
            nodes = nodes * FANOUT + child
        return nodes

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` leaves drawn independently, with replacement, in proportion to their priority.

        Like rlpyt: one uniform draw per item over the whole mass (not stratified). Should
        round-off still end a draw on a zero leaf (an unsampleable slot), it is drawn again;
        rlpyt would return it.
        """
        if not self.total > 0:
            raise ValueError("cannot sample: every priority in the tree is zero")
        leaves = self.find(rng.random(n) * self.total)
        zero = self.levels[0][leaves] <= 0
        while zero.any():
            leaves[zero] = self.find(rng.random(int(zero.sum())) * self.total)
            zero = self.levels[0][leaves] <= 0
        return leaves
