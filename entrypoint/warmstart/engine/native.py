"""The native engine: rlpyt's example-1 DQN loop, on torch and ale-py, without rlpyt.

One sampler iteration is 4 env steps with epsilon-greedy actions (rlpyt's serial sampler,
batch_T=4, batch_B=1), then ``updates_per_iteration`` DQN updates once the replay holds
``MIN_STEPS_LEARN`` fresh steps. Log points come every ``LOG_EVERY`` steps as in rlpyt's
MinibatchRl, with a snapshot there according to ``SNAPSHOT_MODE``. The loop reads top to
bottom; the parts it calls (env, model, replay, learner) each live in their own module.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..checkpoint.start import StartPoint
from ..config import SAMPLER_BATCH, Config
from ..errors import ConfigError, SnapshotError
from .atari import AtariEnv
from .dqn import DqnLearner, make_optimizer, updates_per_iteration
from .model import AtariDqnModel
from .replay import PrioritizedReplay, UniformReplay
from .schedules import EPS_INIT, PRI_BETA_FINAL, PRI_BETA_INIT, PRI_BETA_STEPS, linear_ramp

PROGRESS_SECONDS = 10.0
RECENT_EPISODES = 10


class StopRequest:
    """Set by a signal handler; the loop finishes the current iteration, snapshots and stops."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@dataclass
class _Window:
    """What happened since the last log point: becomes one progress.csv row."""

    trajectories: list[dict[str, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    td_abs_errs: list[float] = field(default_factory=list)


def _stats(prefix: str, values: list[float]) -> dict[str, float]:
    """rlpyt's five summary columns (Average/Std/Median/Min/Max) of one quantity."""
    if not values:
        return {f"{prefix}{s}": math.nan for s in ("Average", "Std", "Median", "Min", "Max")}
    a = np.asarray(values, dtype=np.float64)
    return {f"{prefix}Average": a.mean(), f"{prefix}Std": a.std(), f"{prefix}Median":
            float(np.median(a)), f"{prefix}Min": a.min(), f"{prefix}Max": a.max()}


def _to_cpu(obj: Any) -> Any:
    """A copy of a (nested) state dict with every tensor on the CPU, as rlpyt snapshots hold."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return type(obj)((k, _to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def resolve_device(config: Config) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("DEVICE=cuda but no CUDA device is visible to torch; use DEVICE=cpu "
                          "or DEVICE=auto, or run the CUDA image with a GPU attached.")
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


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
        self.env = AtariEnv(config.game, seed=env_seed)
        self.rng = np.random.default_rng(act_seed)
        n_actions = self.env.n_actions
        self.model = AtariDqnModel(n_actions, dueling=config.dueling).to(self.device)
        self.target = AtariDqnModel(n_actions, dueling=config.dueling).to(self.device)
        self.optimizer = make_optimizer(self.model, start.lr, config.batch_size)
        update_counter = self._load(start) if start.snapshot is not None else 0
        if start.snapshot is None:
            self.target.load_state_dict(self.model.state_dict())
        for group in self.optimizer.param_groups:
            group["lr"] = start.lr
        replay_kwargs = {"n_step_return": config.n_step_return, "discount": config.discount,
                         "seed": replay_seed}
        self.replay: UniformReplay = (
            PrioritizedReplay(config.replay_size, alpha=0.6, beta=PRI_BETA_INIT, **replay_kwargs)
            if config.prioritized_replay else UniformReplay(config.replay_size, **replay_kwargs))
        self.learner = DqnLearner(
            self.model, self.target, self.optimizer, discount=config.discount,
            n_step_return=config.n_step_return, double_dqn=config.double_dqn,
            target_update_interval=config.target_update_interval,
            prioritized_replay=config.prioritized_replay, update_counter=update_counter)
        self.updates_per_itr = updates_per_iteration(config.replay_ratio, SAMPLER_BATCH,
                                                     config.batch_size)

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
            self.optimizer.load_state_dict(snapshot.optimizer)
        except (ValueError, KeyError, RuntimeError) as err:
            raise SnapshotError(f"{snapshot.path}: optimizer_state_dict does not fit the model "
                                f"({err}).") from None
        steps = [s["step"] for s in self.optimizer.state.values() if "step" in s]
        return int(max((float(s) for s in steps), default=0))

    def state(self) -> dict[str, Any]:
        """The tensors a snapshot holds, on the CPU."""
        return {"model": _to_cpu(self.model.state_dict()),
                "target": _to_cpu(self.target.state_dict()),
                "optimizer": _to_cpu(self.optimizer.state_dict())}

    def _act(self, observation: np.ndarray, epsilon: float) -> int:
        """Epsilon-greedy: the network is only asked when the coin says exploit."""
        if self.rng.random() < epsilon:
            return int(self.rng.integers(self.env.n_actions))
        with torch.no_grad():
            obs = torch.from_numpy(observation).to(self.device, non_blocking=True)
            return int(self.model(obs).argmax(-1).item())

    def train(self, stop: StopRequest) -> str:
        """Run to the budget's target iteration; returns ``finished`` or ``stopped``."""
        config, start, run = self.config, self.start, self.start.run
        budget = run.budget
        eps_itr_max = max(1, config.eps_steps // SAMPLER_BATCH)
        beta_itr_max = max(1, PRI_BETA_STEPS // SAMPLER_BATCH)
        log_itrs = max(1, config.log_every // SAMPLER_BATCH)
        self.model.train()
        observation = self.env.reset()
        trajectory = {"Length": 0, "Return": 0.0, "NonzeroRewards": 0, "DiscountedReturn": 0.0,
                      "GameScore": 0.0, "discount": 1.0}
        window = _Window()
        recent_scores: deque[float] = deque(maxlen=RECENT_EPISODES)
        last_row = run.last_row or {}
        cum_time_before = float(last_row.get("Diagnostics/CumTime (s)") or 0.0)
        cum_trajs = int(float(last_row.get("Diagnostics/CumCompletedTrajs") or 0))
        started = last_log_time = last_print = time.monotonic()
        steps_at_print, updates_at_log = 0, self.learner.update_counter
        epsilon, last_loss = EPS_INIT, math.nan

        for itr in range(start.first_itr, budget.target_itr + 1):
            epsilon = linear_ramp(itr, budget.eps_decay_start_itr, eps_itr_max, EPS_INIT,
                                  config.eps_final)
            for _ in range(SAMPLER_BATCH):
                action = self._act(observation, epsilon)
                step = self.env.step(action)
                self.replay.append(observation[-1], action, step.reward, step.done)
                trajectory["Length"] += 1
                trajectory["Return"] += step.reward
                trajectory["NonzeroRewards"] += step.reward != 0
                trajectory["DiscountedReturn"] += trajectory["discount"] * step.reward
                trajectory["discount"] *= config.discount
                trajectory["GameScore"] += step.game_score
                if step.traj_done:
                    finished = {k: float(v) for k, v in trajectory.items() if k != "discount"}
                    window.trajectories.append(finished)
                    recent_scores.append(finished["GameScore"])
                    cum_trajs += 1
                    trajectory = dict.fromkeys(trajectory, 0) | {"discount": 1.0}
                    observation = self.env.reset()
                else:
                    observation = step.observation

            if itr >= start.min_itr_learn and self.replay.can_sample():
                if itr == start.min_itr_learn:
                    self.log(f"replay holds {len(self.replay)} fresh steps: updates start "
                             f"({self.updates_per_itr} per iteration)")
                for _ in range(self.updates_per_itr):
                    batch = self.replay.sample(config.batch_size)
                    info = self.learner.update(batch)
                    if config.prioritized_replay:
                        self.replay.update_priorities(batch.idxs, info.td_abs_err)
                    window.losses.append(info.loss)
                    last_loss = info.loss
                    window.grad_norms.append(info.grad_norm)
                    window.td_abs_errs.extend(info.td_abs_err[::8].tolist())
                if config.prioritized_replay:
                    self.replay.beta = linear_ramp(itr, budget.eps_decay_start_itr, beta_itr_max,
                                                   PRI_BETA_INIT, PRI_BETA_FINAL)

            now = time.monotonic()
            # read the flag once: a signal arriving later in this iteration is seen in the next
            # one, so the iteration that returns "stopped" is always the one snapshotted
            stopping = stop.requested
            final = itr == budget.target_itr or stopping
            if (itr + 1) % log_itrs == 0 or final:
                elapsed = now - last_log_time
                row = {
                    "Diagnostics/Iteration": itr,
                    "Diagnostics/CumTime (s)": round(cum_time_before + now - started, 3),
                    "Diagnostics/CumSteps": (itr + 1) * SAMPLER_BATCH,
                    "Diagnostics/CumCompletedTrajs": cum_trajs,
                    "Diagnostics/CumUpdates": self.learner.update_counter,
                    "Diagnostics/StepsPerSecond": None,
                    "Diagnostics/UpdatesPerSecond":
                        (self.learner.update_counter - updates_at_log) / max(elapsed, 1e-9),
                    "Diagnostics/ReplayRatio": (self.updates_per_itr * config.batch_size
                                                / SAMPLER_BATCH),
                    "Epsilon": epsilon,
                    "LearningRate": self.optimizer.param_groups[0]["lr"],
                }
                for key in ("Length", "Return", "NonzeroRewards", "DiscountedReturn",
                            "GameScore"):
                    row |= _stats(key, [t[key] for t in window.trajectories])
                row |= _stats("loss", window.losses) | _stats("gradNorm", window.grad_norms)
                row |= _stats("tdAbsErr", window.td_abs_errs)
                steps_in_window = ((itr + 1) % log_itrs or log_itrs) * SAMPLER_BATCH
                row["Diagnostics/StepsPerSecond"] = steps_in_window / max(elapsed, 1e-9)
                run.log_row(row)
                seconds = run.save_snapshot(itr, self.state, final=final)
                if seconds:
                    self.log(f"snapshot itr {itr} cum_steps {itr * SAMPLER_BATCH} written "
                             f"in {seconds:.2f}s")
                window = _Window()
                last_log_time, updates_at_log = now, self.learner.update_counter

            if now - last_print >= PROGRESS_SECONDS or final:
                done_steps = (itr - start.first_itr + 1) * SAMPLER_BATCH
                rate = (done_steps - steps_at_print) / max(now - last_print, 1e-9)
                left = (budget.target_itr - itr) * SAMPLER_BATCH
                score = f"{np.mean(recent_scores):.1f}" if recent_scores else "n/a"
                eta = _format_duration(left / rate) if rate > 0 else "?"
                self.log(f"itr {itr} | {done_steps}/"
                         f"{(budget.target_itr - start.first_itr + 1) * SAMPLER_BATCH} steps "
                         f"(total {(itr + 1) * SAMPLER_BATCH}) | {rate:.1f} steps/s | ETA {eta} | "
                         f"score(last {len(recent_scores)}) {score} | eps {epsilon:.3f} | "
                         f"loss {last_loss:.4f}")
                last_print, steps_at_print = now, done_steps
            if stopping and itr < budget.target_itr:
                return "stopped"
        return "finished"
