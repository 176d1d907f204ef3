"""One DQN update with the semantics of rlpyt's ``DQN.loss`` and ``DQN.optimize_agent``.

Same target, loss, importance weighting, gradient clipping, priorities and target-copy timing,
and the same floating-point operations in the same order, so that from the same weights and
the same minibatch a step here lands on the parameters rlpyt's step lands on.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..agents.model import AtariDqnModel
from ..replays.batch import ReplayBatch


class UpdateInfo(NamedTuple):
    """What rlpyt's ``OptInfo`` records for one update, plus the full priorities."""

    loss: float
    grad_norm: float  # before clipping, as clip_grad_norm_ returns it
    td_abs_err: np.ndarray  # float32 [B]: |TD error| clamped to [0, delta_clip], fed to the replay


def make_optimizer(model: AtariDqnModel, learning_rate: float,
                   batch_size: int, *, capturable: bool = False) -> torch.optim.Adam:
    """Adam with rlpyt's default ``optim_kwargs``: ``eps = 0.01 / batch_size``.

    ``foreach=True``: the multi-tensor step gives bit-identical parameters to the per-tensor
    loop torch uses by default on the CPU (as rlpyt runs it), a little faster (3.8 instead of
    4.1 ms for this model on 2 threads). The fused step (1.1 ms) differs in the last bits.
    ``capturable=True`` (for a CUDA graph) keeps the step count on the device, so the step
    reads no host value; the arithmetic is Adam's all the same.
    """
    return torch.optim.Adam(model.parameters(), lr=learning_rate, eps=0.01 / batch_size,
                            foreach=True, capturable=capturable)


def load_optimizer_state(optimizer: torch.optim.Adam, state: dict) -> None:
    """Load a snapshot's Adam state, keeping the multi-tensor step (and capturability) on.

    A saved param group carries its own ``foreach`` and ``capturable`` (None and False in
    rlpyt's snapshots), which ``load_state_dict`` would otherwise restore.
    """
    capturable = [group.get("capturable", False) for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, keep in zip(optimizer.param_groups, capturable, strict=True):
        group["foreach"] = True
        group["capturable"] = keep
    if any(capturable):  # a capturable step reads its count from the parameters' device
        for param, param_state in optimizer.state.items():
            if "step" in param_state:
                param_state["step"] = param_state["step"].to(param.device, torch.float32)


class DqnLearner:
    """One DQN update with rlpyt's semantics, on whatever device the model lives.

    ``update_counter`` is the number of updates done so far. rlpyt increments it after the
    optimizer step and copies the target when the new count is a multiple of
    ``target_update_interval``, so the first update (count 0 -> 1) never copies. Passing the
    count a snapshot reached keeps the copy schedule of the uninterrupted run (a warm-started
    rlpyt restarts it at 0).
    """

    def __init__(self, model: AtariDqnModel, target_model: AtariDqnModel,
                 optimizer: torch.optim.Optimizer, *, discount: float = 0.99,
                 n_step_return: int = 1, double_dqn: bool = False,
                 delta_clip: float | None = 1.0, clip_grad_norm: float = 10.0,
                 target_update_interval: int = 312, prioritized_replay: bool = False,
                 update_counter: int = 0) -> None:
        if target_update_interval < 1:
            raise ValueError(f"target_update_interval must be at least 1, "
                             f"not {target_update_interval}")
        self.model = model
        self.target_model = target_model
        self.optimizer = optimizer
        # rlpyt's Python-float discount ** n, applied to target_q before the (1 - done_n) mask.
        self.bootstrap_discount = discount ** n_step_return
        self.double_dqn = double_dqn
        self.delta_clip = delta_clip
        self.clip_grad_norm = clip_grad_norm
        self.target_update_interval = target_update_interval
        self.prioritized_replay = prioritized_replay
        self.update_counter = update_counter

    def loss(self, batch: ReplayBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's mean (importance-weighted) Huber loss, and its clamped |TD errors|."""
        device = next(self.model.parameters()).device
        observation = batch.observation.to(device, non_blocking=True)
        target_observation = batch.target_observation.to(device, non_blocking=True)
        action = batch.action.to(device, non_blocking=True)
        return_ = batch.return_.to(device, non_blocking=True)
        done_n = batch.done_n.to(device, non_blocking=True)

        q = self.model(observation).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            target_qs = self.target_model(target_observation)
            if self.double_dqn:  # a* from the online net, evaluated by the target net
                next_action = self.model(target_observation).argmax(dim=-1)
                target_q = target_qs.gather(-1, next_action.unsqueeze(-1)).squeeze(-1)
            else:
                target_q = target_qs.max(dim=-1).values
        y = return_ + (1 - done_n) * (self.bootstrap_discount * target_q)
        delta = y - q
        losses = 0.5 * delta ** 2
        abs_delta = delta.abs()
        if self.delta_clip is not None:
            linear = self.delta_clip * (abs_delta - self.delta_clip / 2)
            losses = torch.where(abs_delta <= self.delta_clip, losses, linear)
        if self.prioritized_replay:
            # rlpyt: the plain mean of weighted losses, not normalised by the weights' sum.
            losses = losses * batch.is_weights.to(device, non_blocking=True)
        td_abs_err = abs_delta.detach()
        if self.delta_clip is not None:
            td_abs_err = td_abs_err.clamp(0, self.delta_clip)
        return losses.mean(), td_abs_err

    def update(self, batch: ReplayBatch) -> UpdateInfo:
        """One gradient step; then the counter, then the target copy when it is due."""
        self.optimizer.zero_grad()
        loss, td_abs_err = self.loss(batch)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        self.update_counter += 1
        if self.update_counter % self.target_update_interval == 0:
            self.update_target()
        # One device-to-host copy for everything reported: a single sync per update.
        report = torch.cat((loss.detach().reshape(1), grad_norm.reshape(1).to(loss.dtype),
                            td_abs_err)).cpu().numpy()
        return UpdateInfo(float(report[0]), float(report[1]), report[2:])

    def update_target(self) -> None:
        """rlpyt's ``update_state_dict`` at its default ``tau=1``: the target becomes a copy."""
        self.target_model.load_state_dict(self.model.state_dict())
