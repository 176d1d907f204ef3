"""The one structure that crosses from replay to learner: a sampled minibatch, named."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class ReplayBatch(NamedTuple):
    """A minibatch of n-step transitions, as rlpyt's DQN consumes it.

    Tensors live on the CPU when the replay hands them out; the engine moves them to the
    learner's device. ``return_`` is the discounted n-step sum of (clipped) rewards, cut at
    the first ``done`` inside the n steps; ``done_n`` is 1.0 when such a ``done`` happened,
    so the target does not bootstrap past it.
    """

    observation: torch.Tensor  # uint8 [B, 4, 104, 80], frames oldest first
    action: torch.Tensor  # int64 [B]
    return_: torch.Tensor  # float32 [B]
    done_n: torch.Tensor  # float32 [B]
    target_observation: torch.Tensor  # uint8 [B, 4, 104, 80], the observation n steps later
    is_weights: torch.Tensor  # float32 [B]; all ones for uniform replay
    idxs: np.ndarray  # int64 [B]: replay slots, for prioritized-replay updates
