"""Play whole games with a Q-network, as rlpyt's evaluation does: ``warmstart eval`` and the
runner's periodic evaluation (``EVAL_EVERY``).

rlpyt's ``MinibatchRlEval`` evaluates with epsilon 0.001 in envs built from the training env's
arguments, and its eval collector ends a trajectory only at ``traj_done`` (game over or the
horizon), never at a lost life. The same here: the env keeps ``episodic_lives`` (after a lost
life the frame stack is zeroed, exactly the inputs the network was trained on) while an episode
runs on to game over, so its score is the game's whole score. Pong has no lives, so there the
choice changes nothing; in breakout it keeps the network's inputs those of training.

An evaluation never touches what training computes: its own env and epsilon generator, seeded
from ``(SEED, itr)`` (so an evaluation's numbers depend only on the weights, the seed and the
iteration, also after a resume), and its own network, built on the meta device (construction
draws no random numbers) and given the weights.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ...config import EVAL_EPSILON, MAX_EPISODE_STEPS, Config
from ..agents.model import AtariDqnModel, state_dict_signature
from ..samplers.atari import AtariEnv
from ..samplers.trajectory import add_step, finished, new_trajectory
from .video import VideoWriter

_EVAL_STREAM = 0xE7A1
"""Spawn-key tag that keeps evaluation seeds apart from the training streams of ``SEED``."""


class Abandoned(Exception):
    """A stop was asked for during an evaluation: its games are dropped, the snapshot first."""


def _never() -> bool:
    return False


@dataclass
class Evaluation:
    """The finished episodes of one evaluation, with rlpyt's TrajInfo fields."""

    trajectories: list[dict[str, float]]
    seconds: float
    truncated: int  # episodes cut at the step cap, not ended by the game

    @property
    def steps(self) -> int:
        return int(sum(t["Length"] for t in self.trajectories))

    def summary(self, key: str) -> str:
        """``mean m  median m  min m  max m`` of one field, as `warmstart eval` prints it."""
        values = np.array([t[key] for t in self.trajectories], dtype=np.float64)
        return (f"mean {values.mean():.1f}  median {np.median(values):.1f}  "
                f"min {values.min():g}  max {values.max():g}")


def q_network(state_dict: Mapping[str, torch.Tensor], device: torch.device) -> AtariDqnModel:
    """An ``AtariDqnModel`` holding ``state_dict``, built without drawing random numbers."""
    n_actions, dueling = state_dict_signature(state_dict)
    with torch.device("meta"):
        model = AtariDqnModel(n_actions, dueling=dueling)
    model = model.to_empty(device=device)
    model.load_state_dict(state_dict)
    return model.eval()


def play(model: AtariDqnModel, game: str, *, episodes: int, seed: int, itr: int = 0,
         epsilon: float = EVAL_EPSILON, discount: float = 0.99,
         max_steps: int = MAX_EPISODE_STEPS, video: VideoWriter | None = None,
         on_episode: Callable[[int, dict[str, float], bool], None] | None = None,
         should_stop: Callable[[], bool] = _never) -> Evaluation:
    """Play ``episodes`` whole games epsilon-greedily; the first one goes to ``video``.

    ``should_stop`` is asked before every step; when it says yes, ``Abandoned`` is raised
    (a SIGTERM must not wait for up to ``episodes`` x ``max_steps`` steps).

    The network runs on one torch thread meanwhile: a batch-1 forward pass takes 0.6 ms on one
    thread and 2-7 ms on two (measured on a busy 2-core machine), as rlpyt's notes say of its
    action selection.

    ``on_episode(index, trajectory, truncated)`` is called as each game ends, so a long
    evaluation can report as it goes.
    """
    env_seq, act_seq = np.random.SeedSequence(seed, spawn_key=(_EVAL_STREAM, itr)).spawn(2)
    # the env's own horizon must not end a game before max_steps does, and never as game over
    env = AtariEnv(game, seed=int(env_seq.generate_state(1)[0]), horizon=max_steps + 1)
    if env.n_actions != model.n_actions:
        raise ValueError(f"{game} has {env.n_actions} actions, the network {model.n_actions}")
    rng = np.random.default_rng(act_seq)
    device = next(model.parameters()).device
    started = time.monotonic()
    trajectories, truncated = [], 0
    with _one_torch_thread():
        for episode in range(episodes):
            trajectory, cut = _play_one(model, env, rng, device, epsilon=epsilon,
                                        discount=discount, max_steps=max_steps,
                                        video=video if episode == 0 else None,
                                        should_stop=should_stop)
            truncated += cut
            trajectories.append(trajectory)
            if on_episode is not None:
                on_episode(episode, trajectory, cut)
    return Evaluation(trajectories, time.monotonic() - started, truncated)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Batch-1 forward passes on one thread; training's own thread count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _play_one(model: AtariDqnModel, env: AtariEnv, rng: np.random.Generator,
              device: torch.device, *, epsilon: float, discount: float, max_steps: int,
              video: VideoWriter | None,
              should_stop: Callable[[], bool]) -> tuple[dict[str, float], bool]:
    """One game, to game over or ``max_steps``; returns its TrajInfo fields and whether it
    was cut at the step limit. Video frames: the screen after the reset, then one per step."""
    observation = env.reset()
    if video is not None:
        video.add(env.screen_rgb())
    trajectory = new_trajectory()
    while True:
        if should_stop():
            raise Abandoned
        if rng.random() < epsilon:
            action = int(rng.integers(env.n_actions))
        else:
            with torch.no_grad():
                q = model(torch.from_numpy(observation).to(device))
            action = int(q.argmax(-1).item())
        step = env.step(action)
        add_step(trajectory, step.reward, step.game_score, discount)
        if video is not None:
            video.add(env.screen_rgb())
        cut = not step.traj_done and trajectory["Length"] >= max_steps
        if step.traj_done or cut:
            return finished(trajectory), cut
        observation = step.observation


class PeriodicEvaluation:
    """The runner's evaluations: at the first log point at or past each multiple of
    ``EVAL_EVERY`` env steps, and at the last log point of a run that reached its target."""

    def __init__(self, config: Config, device: torch.device, evaluated_cum_steps: int, *,
                 steps_per_itr: int) -> None:
        """``evaluated_cum_steps``: where the run's last evaluation (or its start) was;
        ``steps_per_itr``: the run's env steps per iteration."""
        self.config = config
        self.device = device
        self._per_itr = steps_per_itr
        self._done_through = evaluated_cum_steps // config.eval_every
        self._model: AtariDqnModel | None = None

    def due(self, itr: int, *, end: bool) -> bool:
        return end or (itr + 1) * self._per_itr // self.config.eval_every > self._done_through

    def run(self, itr: int, state_dict: Mapping[str, torch.Tensor], *,
            should_stop: Callable[[], bool] = _never) -> Evaluation | None:
        """Evaluate the given weights (the online network's) at iteration ``itr``; None when
        ``should_stop`` said yes before the games were over."""
        if self._model is None:
            self._model = q_network(state_dict, self.device)
        else:
            self._model.load_state_dict(state_dict)
        self._done_through = (itr + 1) * self._per_itr // self.config.eval_every
        try:
            return play(self._model, self.config.game, episodes=self.config.eval_episodes,
                        seed=self.config.seed, itr=itr, discount=self.config.discount,
                        should_stop=should_stop)
        except Abandoned:
            return None
