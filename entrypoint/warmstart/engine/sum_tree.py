"""A sum tree over a flat array: proportional sampling and priority updates in O(log n).

Leaves hold priorities (already raised to alpha); each inner node holds the sum of its two
children, so a uniform draw in [0, total) descends to a leaf with probability proportional to
its priority. All operations are vectorised over a batch of indexes.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    def __init__(self, size: int) -> None:
        self.capacity = 1 << max(0, size - 1).bit_length()
        self.depth = self.capacity.bit_length() - 1
        self.tree = np.zeros(2 * self.capacity, dtype=np.float64)  # node 1 is the root

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def __getitem__(self, idxs: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(idxs) + self.capacity]

    def set(self, idxs: np.ndarray | int, values: np.ndarray | float) -> None:
        """Set leaves and recompute the sums on their paths to the root."""
        nodes = np.atleast_1d(np.asarray(idxs, dtype=np.int64)) + self.capacity
        self.tree[nodes] = values
        nodes = np.unique(nodes >> 1)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes >> 1)

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf indexes whose cumulative-priority interval contains each of ``values``."""
        values = np.array(values, dtype=np.float64)
        nodes = np.ones(len(values), dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            go_right = values >= self.tree[left]
            values -= self.tree[left] * go_right
            nodes = left + go_right
        return nodes - self.capacity

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` leaves drawn with replacement, proportionally to their priorities."""
        leaves = self.find(rng.random(n) * self.total)
        zero = self[leaves] <= 0  # float round-off at an interval's edge: draw those again
        while zero.any():
            leaves[zero] = self.find(rng.random(int(zero.sum())) * self.total)
            zero = self[leaves] <= 0
        return leaves
