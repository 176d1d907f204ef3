"""The env equals rlpyt's AtariEnv frame pipeline, checked against a plain ALE reference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from warmstart import games
from warmstart.engine.atari import AtariEnv


class _Reference:
    """rlpyt's step order written out plainly on a raw ALE: the independent oracle."""

    def __init__(self, game: str, seed: int, noops: int) -> None:
        self.ale = games.new_ale()
        self.ale.setInt("random_seed", seed)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.loadROM(games.rom_path(game))
        self.actions = self.ale.getMinimalActionSet()
        self.ale.reset_game()
        self.ale.act(0)
        self.lives = self.ale.lives()
        for _ in range(noops):
            self.ale.act(0)
        self.stack = [np.zeros((104, 80), np.uint8)] * 3 + [self._frame(None)]

    def _frame(self, first: np.ndarray | None) -> np.ndarray:
        second = self.ale.getScreenGrayscale()
        both = second if first is None else np.maximum(first, second)
        cropped = both[1:-1]
        resized = cv2.resize(cropped, (80, 104), interpolation=cv2.INTER_LINEAR)
        block_mean = cropped.reshape(104, 2, 80, 2).mean(axis=(1, 3))
        assert np.abs(resized - block_mean).max() <= 0.5 + 1e-9  # exact 2x2 mean, rounded
        return resized

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        score = sum(self.ale.act(self.actions[action]) for _ in range(3))
        first = self.ale.getScreenGrayscale()
        score += self.ale.act(self.actions[action])
        lives = self.ale.lives()
        lost = 0 < lives < self.lives
        if lost:
            self.ale.act(0)
            self.lives = self.ale.lives()
            self.stack = [np.zeros((104, 80), np.uint8)] * 4
            first = None
        self.stack = self.stack[1:] + [self._frame(first)]
        return np.stack(self.stack), float(np.sign(score)), lost or self.ale.game_over()


def test_pong_and_breakout_basics() -> None:
    for game, n_actions in (("pong", 6), ("breakout", 4)):
        env = AtariEnv(game, seed=0)
        obs = env.reset()
        assert env.n_actions == n_actions == games.minimal_action_count(game)
        assert obs.shape == (4, 104, 80) and obs.dtype == np.uint8
        assert not obs[:3].any() and obs[3].any()
        rewards = {env.step(i % n_actions).reward for i in range(300)}
        assert rewards <= {-1.0, 0.0, 1.0}


def test_breakout_episode_matches_reference_with_life_losses() -> None:
    seed = 5
    env = AtariEnv("breakout", seed=seed)
    obs = env.reset()
    noops = int(np.random.default_rng(seed).integers(0, 31))  # the env's own first draw
    ref = _Reference("breakout", seed, noops)
    assert np.array_equal(obs, np.stack(ref.stack))
    rng = np.random.default_rng(1)
    lives_lost = 0
    while True:
        action = int(rng.integers(env.n_actions))
        step = env.step(action)
        want_obs, want_reward, want_done = ref.step(action)
        assert np.array_equal(step.observation, want_obs)
        assert (step.reward, step.done) == (want_reward, want_done)
        if step.done and not step.traj_done:
            lives_lost += 1
            assert not step.observation[:3].any()  # history zeroed at a lost life
        if step.traj_done:
            break
    assert lives_lost >= 2


def test_same_seed_same_trajectory_and_horizon() -> None:
    def play(seed: int) -> list[float]:
        env = AtariEnv("pong", seed=seed, horizon=50)
        env.reset()
        out = []
        for i in range(51):
            step = env.step(i % 6)
            out.append(float(step.observation.sum()))
            if step.traj_done:
                assert i == 50  # the horizon ends the trajectory
        return out

    assert play(7) == play(7)
    assert play(7) != play(8)


def test_unknown_game_names_close_matches() -> None:
    with pytest.raises(ValueError, match="did you mean breakout"):
        AtariEnv("breakuot", seed=0)


def test_rlpyt_atari_env_agrees() -> None:
    """Where rlpyt (and atari_py) is installed: identical frames, rewards and dones."""
    rlpyt_env = pytest.importorskip("rlpyt.envs.atari.atari_env",
                                    reason="rlpyt is not importable here")
    theirs = rlpyt_env.AtariEnv(game="breakout", max_start_noops=0)
    ours = AtariEnv("breakout", seed=0, max_start_noops=0)
    assert np.array_equal(theirs.reset(), ours.reset())
    rng = np.random.default_rng(2)
    lives_lost = 0
    for _ in range(3000):
        action = int(rng.integers(ours.n_actions))
        a, b = theirs.step(action), ours.step(action)
        assert np.array_equal(a.observation, b.observation)
        assert (float(a.reward), bool(a.done)) == (b.reward, b.done)
        assert bool(a.env_info.traj_done) == b.traj_done
        lives_lost += b.done and not b.traj_done
        if b.traj_done:
            assert np.array_equal(theirs.reset(), ours.reset())
    assert lives_lost >= 2
