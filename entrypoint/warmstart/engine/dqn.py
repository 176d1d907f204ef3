"""One DQN update with rlpyt's semantics (``rlpyt.algos.dqn.dqn.DQN.loss`` and
``optimize_agent``): the same target, loss, clipping, priorities and target-copy timing, so a
model trained here is the model rlpyt would have trained from the same batches.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .batch import ReplayBatch
from .model import AtariDqnModel


class UpdateInfo(NamedTuple):
    loss: float
    grad_norm: float
    td_abs_err: np.ndarray  # [B]; clamped to delta_clip: what prioritized replay is fed


def make_optimizer(model: AtariDqnModel, learning_rate: float,
                   batch_size: int) -> torch.optim.Adam:
    """Adam with rlpyt's default ``eps = 0.01 / batch_size``."""
    return torch.optim.Adam(model.parameters(), lr=learning_rate, eps=0.01 / batch_size)


def updates_per_iteration(replay_ratio: float, sampler_batch_size: int, batch_size: int) -> int:
    """rlpyt: ``max(1, round(replay_ratio * sampler_batch / batch_size))`` (1 for example 1)."""
    return max(1, round(replay_ratio * sampler_batch_size / batch_size))


class DqnLearner:
    """Owns the online/target pair and the optimizer's steps; counts updates across warm starts.

    ``update_counter`` continues from the snapshot's Adam step count, so the target network is
    copied on the same schedule as in the uninterrupted run (rlpyt restarts it at 0).
    """

    def __init__(self, model: AtariDqnModel, target_model: AtariDqnModel,
                 optimizer: torch.optim.Optimizer, *, discount: float = 0.99,
                 n_step_return: int = 1, double_dqn: bool = False,
                 delta_clip: float | None = 1.0, clip_grad_norm: float = 10.0,
                 target_update_interval: int = 312, target_update_tau: float = 1.0,
                 prioritized_replay: bool = False, update_counter: int = 0) -> None:
        self.model = model
        self.target_model = target_model
        self.optimizer = optimizer
        self.bootstrap_discount = discount ** n_step_return
        self.double_dqn = double_dqn
        self.delta_clip = delta_clip
        self.clip_grad_norm = clip_grad_norm
        self.target_update_interval = target_update_interval
        self.target_update_tau = target_update_tau
        self.prioritized_replay = prioritized_replay
        self.update_counter = update_counter
        self.device = next(model.parameters()).device

    def loss(self, batch: ReplayBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (importance-weighted) Huber loss of the TD error, and |TD error| for priorities."""
        to = {"device": self.device, "non_blocking": True}
        observation = batch.observation.to(**to)
        target_observation = batch.target_observation.to(**to)
        q = self.model(observation).gather(1, batch.action.to(**to).unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            target_qs = self.target_model(target_observation)
            if self.double_dqn:
                next_action = self.model(target_observation).argmax(dim=-1, keepdim=True)
                target_q = target_qs.gather(1, next_action).squeeze(1)
            else:
                target_q = target_qs.max(dim=-1).values
            y = batch.return_.to(**to) + (1 - batch.done_n.to(**to)) * (
                self.bootstrap_discount * target_q)
        delta = y - q
        abs_delta = delta.abs()
        losses = 0.5 * delta ** 2
        if self.delta_clip is not None:
            linear = self.delta_clip * (abs_delta - self.delta_clip / 2)
            losses = torch.where(abs_delta <= self.delta_clip, losses, linear)
        if self.prioritized_replay:
            losses = losses * batch.is_weights.to(**to)
        td_abs_err = abs_delta.detach()
        if self.delta_clip is not None:
            td_abs_err = td_abs_err.clamp(0, self.delta_clip)
        return losses.mean(), td_abs_err

    def update(self, batch: ReplayBatch) -> UpdateInfo:
        """One gradient step; copies the target every ``target_update_interval`` updates."""
        self.optimizer.zero_grad()
        loss, td_abs_err = self.loss(batch)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        self.update_counter += 1
        if self.update_counter % self.target_update_interval == 0:
            self._update_target()
        return UpdateInfo(float(loss.detach()), float(grad_norm), td_abs_err.cpu().numpy())

    def _update_target(self) -> None:
        tau = self.target_update_tau
        if tau == 1:
            self.target_model.load_state_dict(self.model.state_dict())
            return
        with torch.no_grad():
            for target, online in zip(self.target_model.state_dict().values(),
                                      self.model.state_dict().values(), strict=True):
                target.mul_(1 - tau).add_(online, alpha=tau)
