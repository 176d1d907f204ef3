"""The env equals rlpyt's AtariEnv frame pipeline, checked against a plain ALE reference.

Real ALE throughout, no mocks. The reference below drives its own ``ale_py.ALEInterface`` and
writes rlpyt's step order and preprocessing out plainly, so a slip in the env's buffers, order
of ``act`` calls or life handling shows up as a byte difference.
"""

from __future__ import annotations

import ale_py
import cv2
import numpy as np
import pytest
from warmstart import games
from warmstart.engine.samplers.atari import AtariEnv

NOOP = ale_py.Action.NOOP


def _preprocess(first: np.ndarray | None, second: np.ndarray) -> np.ndarray:
    """rlpyt's frame: max of two screens (screen 2 alone after a reset), crop, 2x bilinear."""
    both = second if first is None else np.maximum(first, second)
    cropped = both[1:-1]
    resized = cv2.resize(cropped, (80, 104), interpolation=cv2.INTER_LINEAR)
    # The crop leaves 208x160, so the bilinear resize is the 2x2 block mean, rounded half up.
    block_sum = cropped.reshape(104, 2, 80, 2).sum(axis=(1, 3), dtype=np.uint16)
    assert np.array_equal(resized, ((block_sum + 2) // 4).astype(np.uint8))
    return resized


class _Reference:
    """rlpyt's AtariEnv step order on a raw ALE, with a given number of start no-ops."""

    def __init__(self, game: str, seed: int, noops: int) -> None:
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale = ale_py.ALEInterface()
        self.ale.setInt("random_seed", seed)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.loadROM(str(ale_py.roms.get_rom_path(game)))
        self.actions = self.ale.getMinimalActionSet()
        self.ale.reset_game()
        self.ale.act(NOOP)
        self.lives = self.ale.lives()
        for _ in range(noops):
            self.ale.act(NOOP)
        self.stack = [np.zeros((104, 80), np.uint8)] * 3
        self.stack.append(_preprocess(None, self.ale.getScreenGrayscale()))

    def step(self, action: int) -> tuple[np.ndarray, float, bool, float, bool]:
        """observation, reward, done, game_score, traj_done (no horizon here)."""
        score = 0
        for _ in range(3):
            score += self.ale.act(self.actions[action])
        first: np.ndarray | None = self.ale.getScreenGrayscale()
        score += self.ale.act(self.actions[action])
        lives = self.ale.lives()
        lost = 0 < lives < self.lives
        if lost:
            self.ale.act(NOOP)
            self.lives = self.ale.lives()
            self.stack = [np.zeros((104, 80), np.uint8)] * 4
            first = None
        self.stack = self.stack[1:] + [_preprocess(first, self.ale.getScreenGrayscale())]
        game_over = self.ale.game_over()
        return np.stack(self.stack), float(np.sign(score)), lost or game_over, score, game_over


def _random_actions(env: AtariEnv, seed: int, n: int) -> list[int]:
    return [int(a) for a in np.random.default_rng(seed).integers(env.n_actions, size=n)]


def test_pong_and_breakout_basics(capfd: pytest.CaptureFixture[str]) -> None:
    for game, n_actions in (("pong", 6), ("breakout", 4)):
        env = AtariEnv(game, seed=0)
        obs = env.reset()
        assert env.n_actions == n_actions == games.minimal_action_count(game)
        assert obs.shape == (4, 104, 80) and obs.dtype == np.uint8
        assert not obs[:3].any() and obs[3].any()
        assert np.array_equal(env.latest_frame, obs[3])
        rewards = set()
        for action in _random_actions(env, 0, 400):
            step = env.step(action)
            assert step.observation.shape == (4, 104, 80) and step.observation.dtype == np.uint8
            assert step.reward == np.sign(step.game_score)
            assert np.array_equal(env.latest_frame, step.observation[-1])
            rewards.add(step.reward)
        assert rewards <= {-1.0, 0.0, 1.0} and len(rewards) > 1
        with pytest.raises(ValueError):
            env.latest_frame[0, 0] = 1  # a live view of the env's buffer: read-only
    assert capfd.readouterr() == ("", "")  # no ALE banner on stdout or stderr


def test_breakout_episode_matches_reference_with_life_losses() -> None:
    seed = 5
    env = AtariEnv("breakout", seed=seed)
    obs = env.reset()
    noops = int(np.random.default_rng(seed).integers(0, 31))  # the env's own first draw
    ref = _Reference("breakout", seed, noops)
    assert np.array_equal(obs, np.stack(ref.stack))
    lives_lost = 0
    for steps, action in enumerate(_random_actions(env, 1, 5000)):
        step = env.step(action)
        want_obs, want_reward, want_done, want_score, want_traj_done = ref.step(action)
        assert np.array_equal(step.observation, want_obs), f"step {steps}"
        assert (step.reward, step.done, step.game_score, step.traj_done) == (
            want_reward, want_done, want_score, want_traj_done), f"step {steps}"
        if step.done and not step.traj_done:
            lives_lost += 1
            assert not step.observation[:3].any() and step.observation[3].any()
        if step.traj_done:
            break
    assert step.traj_done, "the episode did not end"
    assert lives_lost == 4  # breakout's five lives: four losses, then game over


def test_unclipped_rewards_and_lives_as_one_episode() -> None:
    env = AtariEnv("breakout", seed=3, clip_reward=False, episodic_lives=False)
    env.reset()
    scores, dones = [], []
    for action in _random_actions(env, 3, 5000):
        step = env.step(action)
        assert step.reward == step.game_score
        scores.append(step.game_score)
        dones.append(step.done)
        if step.traj_done:
            break
    assert dones.count(True) == 1 and dones[-1]  # only game over ends it
    assert sum(scores) > 0


def _trajectory(game: str, seed: int, n: int, **kwargs: float) -> list[tuple]:
    env = AtariEnv(game, seed=seed, **kwargs)
    out = [(env.reset().tobytes(),)]
    for action in _random_actions(env, 0, n):
        step = env.step(action)
        out.append((step.observation.tobytes(), step.reward, step.done, step.traj_done))
        if step.traj_done:
            out.append((env.reset().tobytes(),))
    return out


def test_same_seed_same_trajectory() -> None:
    assert np.random.default_rng(7).integers(0, 31) != np.random.default_rng(8).integers(0, 31)
    assert _trajectory("pong", 7, 300) == _trajectory("pong", 7, 300)
    assert _trajectory("pong", 7, 300) != _trajectory("pong", 8, 300)


def test_seed_reaches_the_ale_for_sticky_actions() -> None:
    sticky = {"repeat_action_probability": 0.25, "max_start_noops": 0}
    assert _trajectory("breakout", 1, 200, **sticky) == _trajectory("breakout", 1, 200, **sticky)
    assert _trajectory("breakout", 1, 200, **sticky) != _trajectory("breakout", 2, 200, **sticky)


def test_horizon_ends_the_trajectory_as_rlpyt_counts() -> None:
    env = AtariEnv("pong", seed=0, horizon=50)
    for _ in range(2):  # the counter starts again at each reset
        env.reset()
        flags = [(s.done, s.traj_done) for s in map(env.step, _random_actions(env, 0, 51))]
        assert flags[:50] == [(False, False)] * 50  # pong: no lives, no game over this soon
        assert flags[50] == (True, True)  # rlpyt compares the counter before incrementing it


def test_clone_and_restore_continue_exactly_in_a_fresh_env() -> None:
    env = AtariEnv("breakout", seed=11)
    env.reset()
    actions = _random_actions(env, 4, 300)
    for action in actions[:100]:
        env.step(action)
    state = env.clone_state()

    def go_on(e: AtariEnv) -> list[tuple]:
        out = [e.latest_frame.tobytes()]
        for i, action in enumerate(actions[100:]):
            step = e.step(action)
            out.append((step.observation.tobytes(), step.reward, step.done, step.traj_done))
            if step.traj_done or i == 100:  # a reset draws no-ops from the restored generator
                out.append(e.reset().tobytes())
        return out

    want = go_on(env)
    fresh = AtariEnv("breakout", seed=999)
    fresh.restore_state(state)
    assert go_on(fresh) == want
    with pytest.raises(ValueError, match="does not fit"):
        AtariEnv("pong", seed=0).restore_state(state)
    with pytest.raises(ValueError, match="sticky"):
        AtariEnv("pong", seed=0, repeat_action_probability=0.25).clone_state()


def test_unknown_game_names_close_matches() -> None:
    with pytest.raises(ValueError, match="did you mean breakout"):
        AtariEnv("breakuot", seed=0)
    with pytest.raises(ValueError, match="single-player"):
        games.rom_path("combat")  # bundled, but loading it would end the process


def test_game_lists() -> None:
    names = games.available_games()
    assert names == sorted(names) and {"pong", "breakout", "space_invaders"} <= set(names)
    assert "combat" not in names
    assert "breakout" in games.game_for_action_count(4)
    assert {"pong", "space_invaders"} <= set(games.game_for_action_count(6))
    assert all(games.minimal_action_count(g) == 6 for g in games.game_for_action_count(6))


def test_the_action_count_table_is_ale_pys() -> None:
    """``inspect`` names a snapshot's likely games from a table: it must be what ale-py's
    ROMs say (a new ale-py that changes an action set fails here, not in a user's answer)."""
    assert {game: games.minimal_action_count(game)
            for game in games.COMMON_ACTION_COUNTS} == games.COMMON_ACTION_COUNTS


def test_rlpyt_atari_env_agrees() -> None:
    """Where rlpyt (and atari_py) is installed: identical frames, rewards and dones."""
    rlpyt_env = pytest.importorskip("rlpyt.envs.atari.atari_env",
                                    reason="rlpyt is not importable here")
    theirs = rlpyt_env.AtariEnv(game="breakout", max_start_noops=0)
    ours = AtariEnv("breakout", seed=0, max_start_noops=0)
    assert np.array_equal(theirs.reset(), ours.reset())
    lives_lost = games_over = 0
    for action in _random_actions(ours, 2, 3000):
        a, b = theirs.step(action), ours.step(action)
        assert np.array_equal(a.observation, b.observation)
        assert (float(a.reward), bool(a.done)) == (b.reward, b.done)
        assert (float(a.env_info.game_score), bool(a.env_info.traj_done)) == (
            b.game_score, b.traj_done)
        lives_lost += b.done and not b.traj_done
        if b.traj_done:
            games_over += 1
            assert np.array_equal(theirs.reset(), ours.reset())
    assert lives_lost >= 4 and games_over >= 1
