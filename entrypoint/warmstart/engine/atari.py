"""rlpyt's ``AtariEnv``, observation for observation, on ale-py.

rlpyt's env talks to atari_py (bytes keys, its own ROM paths), so it cannot run on ale-py; this
one reproduces its frame pipeline exactly so rlpyt-trained weights see the same inputs here:
``frame_skip - 1`` actions, grab screen 1, the last action, a life check (which acts one no-op
when a life is lost), grab screen 2; the max of the two grayscale screens, rows ``[1:-1]``
cropped, a bilinear resize to 80x104, and a stack of the last 4 such frames, oldest first,
zeroed on reset and on a lost life. Two differences, both for reproducibility: the start
no-ops come from the env's own seeded generator (rlpyt uses numpy's global one), and the ALE
itself is seeded.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from ..games import new_ale, rom_path

HEIGHT, WIDTH = 104, 80


class StepResult(NamedTuple):
    observation: np.ndarray  # uint8 [num_img_obs, 104, 80], oldest frame first
    reward: float  # sign-clipped when clip_reward
    done: bool  # game over, horizon, or (episodic_lives) a lost life
    game_score: float  # the raw score of this step
    traj_done: bool  # game over or horizon: only then does the caller reset()


class AtariEnv:
    """One Atari game with rlpyt's preprocessing; ``reset`` is a hard reset of the game."""

    def __init__(self, game: str, seed: int, *, frame_skip: int = 4, num_img_obs: int = 4,
                 clip_reward: bool = True, episodic_lives: bool = True,
                 max_start_noops: int = 30, repeat_action_probability: float = 0.0,
                 horizon: int = 27_000) -> None:
        self.game = game
        self.ale = new_ale()
        self.ale.setInt("random_seed", int(seed) % (2**31))
        self.ale.setFloat("repeat_action_probability", float(repeat_action_probability))
        self.ale.loadROM(rom_path(game))
        self._actions = self.ale.getMinimalActionSet()
        self._frame_skip = frame_skip
        self._clip_reward = clip_reward
        self._episodic_lives = episodic_lives
        self._max_start_noops = max_start_noops
        self._horizon = horizon
        self._rng = np.random.default_rng(seed)
        height, width = self.ale.getScreenDims()
        self._screen_1 = np.zeros((height, width), np.uint8)
        self._screen_2 = np.zeros((height, width), np.uint8)
        self._max_screen = np.zeros((height, width), np.uint8)
        self._obs = np.zeros((num_img_obs, HEIGHT, WIDTH), np.uint8)
        self._lives = 0
        self._step_counter = 0

    @property
    def n_actions(self) -> int:
        return len(self._actions)

    @property
    def latest_frame(self) -> np.ndarray:
        return self._obs[-1]

    def reset(self) -> np.ndarray:
        """New game, 0..max_start_noops no-ops, first frame; the older frames stay zero."""
        self.ale.reset_game()
        self._zero_frames()
        self._after_life_change()
        for _ in range(int(self._rng.integers(0, self._max_start_noops + 1))):
            self.ale.act(0)
        self._push_frame()
        self._step_counter = 0
        return self._obs.copy()

    def step(self, action: int) -> StepResult:
        ale_action = self._actions[action]
        score = 0.0
        for _ in range(self._frame_skip - 1):
            score += self.ale.act(ale_action)
        self.ale.getScreenGrayscale(self._screen_1)
        score += self.ale.act(ale_action)
        lives = self.ale.lives()
        lost_life = 0 < lives < self._lives
        if lost_life:
            self._after_life_change()
            if self._episodic_lives:
                self._zero_frames()
        self._push_frame()
        game_over = self.ale.game_over() or self._step_counter >= self._horizon
        self._step_counter += 1
        reward = float(np.sign(score)) if self._clip_reward else score
        done = game_over or (self._episodic_lives and lost_life)
        return StepResult(self._obs.copy(), reward, done, score, game_over)

    def _after_life_change(self) -> None:
        """rlpyt acts one no-op to get past the lost-life state, then counts lives again."""
        self.ale.act(0)
        self._lives = self.ale.lives()

    def _zero_frames(self) -> None:
        self._obs[:] = 0
        self._max_screen[:] = 0
        self._screen_1[:] = 0
        self._screen_2[:] = 0

    def _push_frame(self) -> None:
        """Max of the two screens, crop, bilinear 2x downscale; shift the stack by one."""
        self.ale.getScreenGrayscale(self._screen_2)
        np.maximum(self._screen_1, self._screen_2, out=self._max_screen)
        self._obs[:-1] = self._obs[1:]
        cv2.resize(self._max_screen[1:-1], (WIDTH, HEIGHT), dst=self._obs[-1],
                   interpolation=cv2.INTER_LINEAR)
