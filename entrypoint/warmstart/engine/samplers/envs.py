"""The ``batch_B`` environments of a sampler iteration, stepped as one (rlpyt's ``batch_B``).

The engine asks for one step of every environment at once: one action each in, one
``EnvSteps`` out. An environment whose game ended (``traj_done``) is reset inside ``step``,
so the observation it returns is the first of its next game, as rlpyt's samplers do; what
the replay stores is the observation each action was taken at, which the engine already holds.

``SerialEnvs`` steps them one after another in this process. Environment ``b`` is seeded
from ``env_seeds(seed, B)[b]``: environment 0 keeps the seed a one-environment run always had,
so a run's results depend on its ``SEED`` and ``batch_B`` only, never on how the stepping is
spread over processes.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from .atari import AtariEnv, EnvState


class EnvSteps(NamedTuple):
    """One step of every environment, index ``b`` for environment ``b``."""

    observations: np.ndarray  # uint8 [B, 4, 104, 80]: next observation (a new game's after traj_done)
    rewards: np.ndarray  # float32 [B], sign-clipped
    dones: np.ndarray  # bool [B]: game over, horizon, or a lost life
    game_scores: np.ndarray  # float64 [B]: raw, unclipped score of the step
    traj_dones: np.ndarray  # bool [B]: game over or horizon (the env was reset)


class Envs(Protocol):
    """What the engine needs of a batch of environments: ``SerialEnvs`` in this process, or
    ``workers.ParallelEnvs`` in worker processes, with the same results."""

    n_actions: int

    def __len__(self) -> int: ...
    def reset(self) -> np.ndarray: ...
    def step(self, actions: np.ndarray) -> EnvSteps: ...
    def states(self) -> list[EnvState]: ...
    def restore(self, states: list[EnvState]) -> None: ...
    def close(self) -> None: ...


def env_seeds(seed: int, count: int) -> list[int]:
    """``seed`` for environment 0, then independent seeds spawned from it for the others."""
    spawned = np.random.SeedSequence(seed).spawn(count - 1) if count > 1 else []
    return [seed] + [int(s.generate_state(1)[0]) for s in spawned]


class SerialEnvs:
    """``len(seeds)`` Atari games stepped in turn in the calling process."""

    def __init__(self, game: str, seeds: list[int]) -> None:
        self.envs = [AtariEnv(game, seed=seed) for seed in seeds]
        self.n_actions = self.envs[0].n_actions

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self) -> np.ndarray:
        """A new game in every environment; their first observations, uint8 [B, 4, 104, 80]."""
        return np.stack([env.reset() for env in self.envs])

    def step(self, actions: np.ndarray) -> EnvSteps:
        """Environment ``b`` takes ``actions[b]``; an ended game is reset at once."""
        count = len(self.envs)
        rewards, dones = np.empty(count, np.float32), np.empty(count, bool)
        game_scores, traj_dones = np.empty(count, np.float64), np.empty(count, bool)
        observations = []
        for b, (env, action) in enumerate(zip(self.envs, actions)):
            step = env.step(int(action))
            observations.append(env.reset() if step.traj_done else step.observation)
            rewards[b], dones[b] = step.reward, step.done
            game_scores[b], traj_dones[b] = step.game_score, step.traj_done
        return EnvSteps(np.stack(observations), rewards, dones, game_scores, traj_dones)

    def states(self) -> list[EnvState]:
        """Each environment's exact state, for an exact resume."""
        return [env.clone_state() for env in self.envs]

    def restore(self, states: list[EnvState]) -> None:
        """Continue every environment from ``states`` (from ``states()`` of the same shape)."""
        if len(states) != len(self.envs):
            raise ValueError(f"{len(states)} saved environments do not fit {len(self.envs)}")
        for env, state in zip(self.envs, states):
            env.restore_state(state)

    def close(self) -> None:
        """Nothing to release in-process; worker-backed environments stop their workers here."""
