"""The rlpyt engine: rlpyt's own DQN, AtariDqnAgent, serial sampler and AtariEnv.

This is the seed recipe users run by hand (``DQN(initial_optim_state_dict=...)``,
``AtariDqnAgent(initial_model_state_dict=...)``), driven by the shared runner so it gets the
same config, snapshot checks, progress lines and atomic snapshots as the native engine, with
rlpyt's warm-start traps fixed where rlpyt would restart:

- the agent gets the snapshot in the shape the installed rlpyt wants (the whole
  ``agent_state_dict`` at the pinned commit, the bare model before commit 2e36793), and the
  saved target network is restored too (rlpyt copies the model into it);
- ``itr``/``cum_steps`` continue (the runner starts at the snapshot's ``itr + 1``), the epsilon
  ramp is the lineage's, not one that restarts at 1.0, and updates start after
  ``MIN_STEPS_LEARN`` fresh steps of this job;
- the saved lr stays only when ``LR`` is unset; the update counter (target-copy phase) continues
  from Adam's step count.
rlpyt is imported only here, and only when this engine is chosen.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from ...checkpoint.start import StartPoint
from ...config import Config
from ..hardware.device import to_cpu
from ..samplers.trajectory import TRAJECTORY_KEYS
from .loop import OptStats


def wants_whole_agent_state_dict(agent_cls: type) -> bool:
    """True for rlpyt at or after commit 2e36793, whose DqnAgent reads ``['model']`` itself."""
    return "['model']" in inspect.getsource(agent_cls.initialize)


class RlpytEngine:
    name = "rlpyt"

    def __init__(self, config: Config, start: StartPoint, device: torch.device,
                 log: Callable[[str], None]) -> None:
        from rlpyt.agents.dqn.atari.atari_dqn_agent import AtariDqnAgent
        from rlpyt.agents.dqn.dqn_agent import DqnAgent
        from rlpyt.algos.dqn.dqn import DQN
        from rlpyt.envs.atari.atari_env import AtariEnv, AtariTrajInfo
        from rlpyt.samplers.serial.sampler import SerialSampler
        from rlpyt.utils.seed import set_seed

        self.start = start
        shape = start.shape
        snapshot = start.snapshot
        initial_model = None
        if snapshot is not None:
            whole = {"model": snapshot.model, "target": snapshot.target}
            initial_model = whole if wants_whole_agent_state_dict(DqnAgent) else snapshot.model
        set_seed(config.seed)
        self.agent = AtariDqnAgent(initial_model_state_dict=initial_model,
                                   model_kwargs={"dueling": config.dueling},
                                   eps_final=config.eps_final)
        self.sampler = SerialSampler(
            EnvCls=AtariEnv, TrajInfoCls=AtariTrajInfo, env_kwargs={"game": config.game},
            batch_T=shape.batch_T, batch_B=shape.batch_B, max_decorrelation_steps=0)
        self.algo = DQN(
            discount=config.discount, batch_size=config.batch_size,
            min_steps_learn=0, replay_size=config.replay_size, replay_ratio=config.replay_ratio,
            target_update_interval=config.target_update_interval,
            n_step_return=config.n_step_return, double_dqn=config.double_dqn,
            clip_grad_norm=config.clip_grad_norm, prioritized_replay=config.prioritized_replay, eps_steps=config.eps_steps,
            learning_rate=start.lr,
            initial_optim_state_dict=None if snapshot is None else snapshot.optimizer)
        examples = self.sampler.initialize(
            agent=self.agent, seed=config.seed + 1,
            traj_info_kwargs={"discount": config.discount})
        if device.type == "cuda":
            self.agent.to_device(device.index or 0)
        self.algo.initialize(self.agent, n_itr=start.run.budget.target_itr + 1,
                             batch_spec=self.sampler.batch_spec,
                             mid_batch_reset=self.sampler.mid_batch_reset, examples=examples)
        if snapshot is not None:
            self.agent.target_model.load_state_dict(snapshot.target)
            steps = [float(s["step"]) for s in self.algo.optimizer.state.values() if "step" in s]
            self.algo.update_counter = int(max(steps, default=0))
        else:
            self.agent.target_model.load_state_dict(self.agent.model.state_dict())
        for group in self.algo.optimizer.param_groups:
            group["lr"] = start.lr
        self.algo.min_itr_learn = start.min_itr_learn
        self.agent.set_epsilon_itr_min_max(start.run.budget.eps_decay_start_itr,
                                           max(1, config.eps_steps // shape.steps_per_itr))
        self.device = device
        self.updates_per_itr = self.algo.updates_per_optimize
        self._samples: Any = None

    @property
    def update_counter(self) -> int:
        return int(self.algo.update_counter)

    @property
    def learning_rate(self) -> float:
        return float(self.algo.optimizer.param_groups[0]["lr"])

    def sample(self, itr: int) -> tuple[float, list[dict[str, float]]]:
        self.agent.sample_mode(itr)
        self._samples, traj_infos = self.sampler.obtain_samples(itr)
        finished = [{k: float(getattr(t, k)) for k in TRAJECTORY_KEYS} for t in traj_infos]
        return float(self.agent.eps_sample), finished

    def optimize(self, itr: int) -> OptStats:
        self.agent.train_mode(itr)
        info = self.algo.optimize_agent(itr, self._samples)
        return OptStats(losses=[float(x) for x in info.loss],
                        grad_norms=[float(x) for x in info.gradNorm],
                        td_abs_errs=[float(x) for x in info.tdAbsErr])

    def close(self) -> None:
        self.sampler.shutdown()

    def weights(self) -> dict[str, torch.Tensor]:
        return self.agent.model.state_dict()

    def state(self) -> dict[str, Any]:
        return {"model": to_cpu(self.agent.model.state_dict()),
                "target": to_cpu(self.agent.target_model.state_dict()),
                "optimizer": to_cpu(self.algo.optimizer.state_dict())}
