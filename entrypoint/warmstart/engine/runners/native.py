"""The native engine: rlpyt's Atari DQN on torch and ale-py, without rlpyt.

One sampler iteration is ``batch_T`` time steps of ``batch_B`` environments (the run's sampler
shape; rlpyt example 1's 4 x 1 by default): at each time step one batched forward pass gives
the greedy actions of all B, each environment explores with its own coin (epsilon-greedy), and
the step goes into the frame replay, one stream per environment. Once the replay holds
``MIN_STEPS_LEARN`` fresh steps, each iteration runs ``updates_per_iteration`` DQN updates.
The runner around it (logging, snapshots, signals) is ``loop.train``, shared with rlpyt's engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ... import provenance
from ...checkpoint.resume_state import ResumePayload, ResumeState
from ...checkpoint.start import StartPoint
from ...config import Config, updates_per_iteration
from ...errors import SnapshotError
from ..agents.model import AtariDqnModel
from ..algos.dqn import DqnLearner, load_optimizer_state, make_optimizer
from ..algos.schedules import EPS_INIT, PRI_BETA_FINAL, PRI_BETA_INIT, PRI_BETA_STEPS, linear_ramp
from ..algos.static_update import StaticUpdate
from ..hardware.device import to_cpu
from ..replays import device_replay
from ..replays.device_replay import DeviceReplay
from ..replays.replay import PrioritizedReplay, UniformReplay
from ..samplers.envs import env_seeds
from ..samplers.trajectory import add_step, finished, new_trajectory
from ..samplers.workers import make_envs, worker_count
from . import resume
from .loop import OptStats


class NativeEngine:
    """Builds env, model, replay and learner from the config and the start point, then trains."""

    name = "native"

    def __init__(self, config: Config, start: StartPoint, device: torch.device,
                 log: Callable[[str], None]) -> None:
        self.config = config
        self.start = start
        self.log = log
        env_seed, replay_seed, act_seed = (
            int(s.generate_state(1)[0]) for s in np.random.SeedSequence(config.seed).spawn(3))
        torch.manual_seed(config.seed)
        self.device = device
        shape = start.shape
        workers = min(config.env_workers or worker_count(shape.batch_B), shape.batch_B)
        self.envs = make_envs(config.game, env_seeds(env_seed, shape.batch_B), workers)
        if workers > 1:
            log(f"{shape.batch_B} environments stepped by {workers} worker processes")
        try:
            self._build(config, start, replay_seed, act_seed)
        except BaseException:
            self.envs.close()  # no worker outlives an engine that could not be built
            raise

    def _build(self, config: Config, start: StartPoint, replay_seed: int,
               act_seed: int) -> None:
        """Model, optimizer, replay and learner, from the snapshot or fresh."""
        shape = start.shape
        self.rng = np.random.default_rng(act_seed)
        n_actions = self.envs.n_actions
        self.model = AtariDqnModel(n_actions, dueling=config.dueling).to(self.device)
        self.target = AtariDqnModel(n_actions, dueling=config.dueling).to(self.device)
        graph = self.device.type == "cuda" and config.cuda_graph
        self.optimizer = make_optimizer(self.model, start.lr, config.batch_size,
                                        capturable=graph)
        update_counter = self._load(start) if start.snapshot is not None else 0
        if start.snapshot is None:
            self.target.load_state_dict(self.model.state_dict())
        for group in self.optimizer.param_groups:
            group["lr"] = start.lr
        replay_kwargs = {"n_step_return": config.n_step_return, "discount": config.discount,
                         "seed": replay_seed, "streams": shape.batch_B}
        self.replay = self._make_replay(replay_kwargs)
        self.learner = DqnLearner(
            self.model, self.target, self.optimizer, discount=config.discount,
            n_step_return=config.n_step_return, double_dqn=config.double_dqn,
            clip_grad_norm=config.clip_grad_norm, target_update_interval=config.target_update_interval,
            prioritized_replay=config.prioritized_replay, update_counter=update_counter)
        self.static_update = StaticUpdate(self.learner, config.batch_size, self.device,
                                          graph=graph, log=self.log)
        # the report's loss, grad norm and every 8th |TD error| (what the log's stats sample)
        self._report_rows = torch.tensor([0, 1, *range(2, 2 + config.batch_size, 8)],
                                         device=self.device)
        self.updates_per_itr = updates_per_iteration(config.replay_ratio, shape.sampler_batch,
                                                     config.batch_size)
        self._batch_t = shape.batch_T
        self._eps_itr_max = max(1, config.eps_steps // shape.steps_per_itr)
        self._beta_itr_max = max(1, PRI_BETA_STEPS // shape.steps_per_itr)
        self.model.train()
        self._observations = self.envs.reset()
        self._trajectories = [new_trajectory() for _ in range(shape.batch_B)]
        if start.resume_state is not None:
            self._restore(start.resume_state)

    def _make_replay(self, kwargs: dict[str, Any]) -> UniformReplay | DeviceReplay:
        """The numpy replay (its draws are what exact resume replays), or on a GPU the device
        replay, whose frames stay on the GPU when they fit (else in pinned host memory)."""
        config = self.config
        if config.prioritized_replay:  # its sum tree lives on the host
            if self.device.type == "cuda":
                self.log("prioritized replay: frames and sum tree stay in host memory (one "
                         "copy of the |TD errors| back per update, for the priorities)")
            return PrioritizedReplay(config.replay_size, alpha=0.6, beta=PRI_BETA_INIT,
                                     **kwargs)
        if self.device.type != "cuda" or config.resume_state == "full":
            if self.device.type == "cuda":
                self.log("RESUME_STATE=full: the replay stays in host memory, where a resume "
                         "state is saved from")
            return UniformReplay(config.replay_size, **kwargs)
        on_device = device_replay.storage_for(config.replay_size, self.device, self.log)
        return DeviceReplay(config.replay_size, device=self.device, on_device=on_device,
                            **kwargs)

    def _load(self, start: StartPoint) -> int:
        """Load weights and optimizer state; returns the update count the optimizer has seen."""
        snapshot = start.snapshot
        assert snapshot is not None
        try:
            self.model.load_state_dict(snapshot.model)
            self.target.load_state_dict(snapshot.target)
        except RuntimeError as err:
            raise SnapshotError(f"{snapshot.path}: weights do not fit the model "
                                f"({str(err).splitlines()[-1].strip()}).") from None
        if snapshot.optimizer is None:
            self.log("snapshot has no optimizer state: Adam starts fresh")
            return 0
        try:
            load_optimizer_state(self.optimizer, snapshot.optimizer)
        except (ValueError, KeyError, RuntimeError) as err:
            raise SnapshotError(f"{snapshot.path}: optimizer_state_dict does not fit the model "
                                f"({err}).") from None
        steps = [s["step"] for s in self.optimizer.state.values() if "step" in s]
        return int(max((float(s) for s in steps), default=0))

    @property
    def update_counter(self) -> int:
        return self.learner.update_counter

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state(self) -> dict[str, Any]:
        """The tensors a snapshot holds, on the CPU; with RESUME_STATE=full, the rest too."""
        parts = {"model": to_cpu(self.model.state_dict()),
                 "target": to_cpu(self.target.state_dict()),
                 "optimizer": to_cpu(self.optimizer.state_dict())}
        if self.config.resume_state == "full":
            parts["resume"] = self._resume_payload()
        return parts

    def weights(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def _resume_payload(self) -> ResumePayload:
        """Everything beyond the snapshot that decides the next iteration (see engine.resume)."""
        meta: dict[str, Any] = {
            "min_itr_learn": self.start.min_itr_learn,
            "update_counter": self.learner.update_counter,
            "act_rng": self.rng.bit_generator.state,
            "trajectories": self._trajectories,
            "torch_threads": torch.get_num_threads(),
            "cpu": torch.backends.cpu.get_cpu_capability(),
            "device": str(self.device),
        }
        arrays = {"observations": self._observations}
        for name, (part_meta, part_arrays) in (("rng", resume.rngs(self.device)),
                                               ("env", resume.envs(self.envs)),
                                               ("replay", resume.replay(self.replay))):
            meta[name] = part_meta
            arrays |= part_arrays
        return ResumePayload(meta, arrays)

    def _restore(self, saved: ResumeState) -> None:
        """Continue exactly where the process that wrote ``saved`` stopped."""
        meta = saved.state
        self._warn_if_machine_differs(saved)
        try:
            resume.restore_replay(self.replay, meta["replay"], saved)
            resume.restore_envs(self.envs, meta["env"], saved)
        except ValueError as err:
            raise SnapshotError(f"{saved.path}: does not fit this job ({err}).") from None
        resume.restore_rngs(meta["rng"], saved, self.device)
        self.rng.bit_generator.state = meta["act_rng"]
        self.learner.update_counter = int(meta["update_counter"])
        self._observations = saved.array("observations")
        # a state from before batch_B was saved had one environment's "trajectory"
        saved_trajectories = meta.get("trajectories") or [meta["trajectory"]]
        self._trajectories = [{k: float(v) for k, v in t.items()} for t in saved_trajectories]
        self.log(f"exact resume from {saved.path.name}: replay of {len(self.replay)} steps, "
                 "RNG, emulator and schedule state restored")

    def _warn_if_machine_differs(self, saved: ResumeState) -> None:
        """Same inputs give the same bits only with the same threads, CPU ISA, device and
        libraries."""
        meta = saved.state
        now = {"torch threads": (meta["torch_threads"], torch.get_num_threads()),
               "CPU vector ISA": (meta["cpu"], torch.backends.cpu.get_cpu_capability()),
               "device": (meta["device"], str(self.device))}
        now |= {name: (version, provenance.versions().get(name))
                for name, version in saved.meta["versions"].items()}
        for what, (was, is_) in now.items():
            if was != is_:
                self.log(f"warning: {what} {is_} differs from the interrupted process's "
                         f"({was}): the resume continues, but not bit-exactly")

    def _act(self, observations: np.ndarray, epsilon: float) -> np.ndarray:
        """Epsilon-greedy for each environment, its coins (and random actions) drawn in
        environment order; one forward pass of all B observations, only when a coin says
        exploit (before learning starts none does)."""
        actions = np.empty(len(observations), dtype=np.int64)
        exploit = np.zeros(len(observations), dtype=bool)
        for b in range(len(observations)):
            if self.rng.random() < epsilon:
                actions[b] = self.rng.integers(self.envs.n_actions)
            else:
                exploit[b] = True
        if exploit.any():
            with torch.no_grad():
                obs = torch.from_numpy(observations).to(self.device, non_blocking=True)
                greedy = self.model(obs).argmax(-1).cpu().numpy()
            actions[exploit] = greedy[exploit]
        return actions

    def sample(self, itr: int) -> tuple[float, list[dict[str, float]]]:
        """``batch_T`` steps of every environment at rlpyt's epsilon for ``itr``, stored in
        the replay as they happen."""
        budget = self.start.run.budget
        epsilon = linear_ramp(itr, budget.eps_decay_start_itr, self._eps_itr_max, EPS_INIT,
                              self.config.eps_final)
        ended = []
        trajectories = self._trajectories
        for _ in range(self._batch_t):
            actions = self._act(self._observations, epsilon)
            steps = self.envs.step(actions)
            self.replay.append(self._observations[:, -1], actions, steps.rewards, steps.dones)
            for b, trajectory in enumerate(trajectories):
                add_step(trajectory, float(steps.rewards[b]), float(steps.game_scores[b]),
                         self.config.discount)
                if steps.traj_dones[b]:
                    ended.append(finished(trajectory))
                    trajectories[b] = new_trajectory()
            self._observations = steps.observations
        return epsilon, ended

    def close(self) -> None:
        """Stop the environments (worker processes, where they run in some)."""
        self.envs.close()

    def optimize(self, itr: int) -> OptStats:
        """rlpyt's optimize_agent: no updates before ``min_itr_learn``, then a fixed number."""
        stats = OptStats()
        if itr < self.start.min_itr_learn or not self.replay.can_sample():
            return stats
        for _ in range(self.updates_per_itr):
            batch = self.replay.sample(self.config.batch_size)
            report = self.static_update.run(batch)
            if isinstance(self.replay, PrioritizedReplay):  # a host sum tree: one copy back
                self.replay.update_priorities(batch.idxs, report[2:].cpu().numpy())
            # loss, grad norm and every 8th |TD error|, left where they are until a log point
            stats.pending.append(report.index_select(0, self._report_rows))
        if self.config.prioritized_replay:
            self.replay.beta = linear_ramp(itr, self.start.run.budget.eps_decay_start_itr,
                                           self._beta_itr_max, PRI_BETA_INIT, PRI_BETA_FINAL)
        return stats
