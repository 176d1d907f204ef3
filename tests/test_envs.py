"""The batch of environments a sampler iteration steps: same frames as lone envs, exact states."""

from __future__ import annotations

import numpy as np
from warmstart.engine.samplers.atari import AtariEnv
from warmstart.engine.samplers.envs import SerialEnvs, env_seeds


def test_env_seeds_keep_environment_zero_and_differ() -> None:
    seeds = env_seeds(1234, 4)
    assert seeds[0] == 1234 and len(set(seeds)) == 4
    assert env_seeds(1234, 1) == [1234] and env_seeds(1234, 3) == seeds[:3]


def test_each_environment_sees_what_a_lone_env_with_its_seed_sees() -> None:
    seeds = env_seeds(7, 2)
    batch = SerialEnvs("pong", seeds)
    lone = [AtariEnv("pong", seed=s) for s in seeds]
    first = batch.reset()
    assert first.shape == (2, 4, 104, 80) and first.dtype == np.uint8
    for b, env in enumerate(lone):
        np.testing.assert_array_equal(first[b], env.reset())
    rng = np.random.default_rng(0)
    for _ in range(60):
        actions = rng.integers(batch.n_actions, size=2)
        steps = batch.step(actions)
        for b, env in enumerate(lone):
            step = env.step(int(actions[b]))
            expected = env.reset() if step.traj_done else step.observation
            np.testing.assert_array_equal(steps.observations[b], expected)
            assert (steps.rewards[b], steps.dones[b], steps.traj_dones[b]) == (
                step.reward, step.done, step.traj_done)


def test_restored_states_continue_exactly() -> None:
    batch = SerialEnvs("breakout", env_seeds(3, 2))
    batch.reset()
    rng = np.random.default_rng(1)
    for _ in range(30):
        batch.step(rng.integers(batch.n_actions, size=2))
    saved = batch.states()
    actions = rng.integers(batch.n_actions, size=(40, 2))
    expected = [batch.step(a).observations for a in actions]
    copy = SerialEnvs("breakout", env_seeds(99, 2))
    copy.reset()
    copy.restore(saved)
    for a, observations in zip(actions, expected):
        np.testing.assert_array_equal(copy.step(a).observations, observations)
