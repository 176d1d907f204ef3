"""rlpyt's ``AtariEnv``, observation for observation, on ale-py.

rlpyt's env talks to atari_py (bytes keys, its own ROM paths), so it cannot run on ale-py; this
one reproduces its frame pipeline exactly so that rlpyt-trained weights see the same inputs here:
``frame_skip - 1`` actions, grab screen 1, the last action, a life check (which acts one no-op
when a life is lost), grab screen 2; the max of the two grayscale screens, rows ``[1:-1]``
cropped, a bilinear resize to 80 wide x 104 high (an exact 2x downscale: the rounded mean of each
2x2 block), and a stack of the last ``num_img_obs`` such frames, oldest first, zeroed on reset
and on a lost life. Two deliberate differences, both for reproducibility: the start no-ops come
from the env's own generator seeded with ``seed`` (rlpyt draws them from numpy's global one),
and the ALE itself is seeded with ``seed`` (it only matters with sticky actions).

Speed (measured: ale-py 0.12.1, one pinned core of a busy 2-core dev VM, random actions,
frame_skip 4): 800-1,100 steps/s on pong and breakout. The emulator's four ``act`` calls take
~85% of a step; grabbing, maxing, resizing and stacking the frame ~50 us.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import cv2
import numpy as np
from ale_py import Action, ALEState

from ...games import new_ale, rom_path

HEIGHT, WIDTH = 104, 80


class StepResult(NamedTuple):
    observation: np.ndarray  # uint8 [num_img_obs, 104, 80], oldest frame first; caller owns it
    reward: float  # sign-clipped when clip_reward
    done: bool  # game over, horizon reached, or (episodic_lives) a life lost
    game_score: float  # the raw, unclipped score of this step
    traj_done: bool  # game over or horizon: only then must the caller reset()


class EnvState(NamedTuple):
    """All an ``AtariEnv`` needs to go on exactly where it was, in plain types for saving."""

    game: str
    ale: bytes  # ALEState.serialize(), the emulator's RNG included
    frames: np.ndarray  # the frame stack, uint8 [num_img_obs, 104, 80]
    lives: int
    step_counter: int
    noop_rng: dict[str, Any]  # the start-noop generator's bit_generator.state


class AtariEnv:
    """One Atari game with rlpyt's preprocessing; ``reset`` is a hard reset of the game.

    ``done`` and ``traj_done`` keep rlpyt's meaning: with ``episodic_lives`` a lost life ends
    the learning episode (``done``, frame history zeroed) while the game goes on; only
    ``traj_done`` (game over, or the horizon) asks for ``reset()``. The horizon check is
    rlpyt's too: the step counter is compared before it is incremented, so the first
    ``traj_done`` from the horizon comes on step ``horizon + 1`` after a reset.
    """

    def __init__(self, game: str, seed: int, *, frame_skip: int = 4, num_img_obs: int = 4,
                 clip_reward: bool = True, episodic_lives: bool = True,
                 max_start_noops: int = 30, repeat_action_probability: float = 0.0,
                 horizon: int = 27_000) -> None:
        if frame_skip < 1 or num_img_obs < 1 or max_start_noops < 0:
            raise ValueError("frame_skip and num_img_obs must be >= 1, max_start_noops >= 0; "
                             f"got {frame_skip}, {num_img_obs}, {max_start_noops}")
        self.game = game
        path = rom_path(game)  # ValueError with close names before any ALE work
        self._noop_rng = np.random.default_rng(seed)
        self._ale = new_ale()
        self._ale.setInt("random_seed", int(seed) % 2**31)  # the ALE takes a 32-bit int
        self._ale.setFloat("repeat_action_probability", float(repeat_action_probability))
        self._ale.loadROM(path)
        self._actions = self._ale.getMinimalActionSet()
        self._frame_skip = frame_skip
        self._clip_reward = clip_reward
        self._episodic_lives = episodic_lives
        self._max_start_noops = max_start_noops
        self._sticky = float(repeat_action_probability)
        self._horizon = int(horizon)
        height, width = self._ale.getScreenDims()
        self._screen_1 = np.zeros((height, width), np.uint8)
        self._screen_2 = np.zeros((height, width), np.uint8)
        self._max_screen = np.zeros((height, width), np.uint8)
        self._obs = np.zeros((num_img_obs, HEIGHT, WIDTH), np.uint8)
        self._latest = self._obs[-1]  # a view: _obs is only ever written in place
        self._latest.flags.writeable = False
        self._lives = 0
        self._step_counter = 0

    @property
    def n_actions(self) -> int:
        """Size of the minimal action set: actions are indices into it, as in rlpyt."""
        return len(self._actions)

    @property
    def latest_frame(self) -> np.ndarray:
        """The newest 104x80 frame, read-only and live: it changes on the next step or reset.

        A view, not a copy, because a frame-based replay copies it into its own storage anyway.
        """
        return self._latest

    def reset(self) -> np.ndarray:
        """New game, 0..max_start_noops no-ops, first frame; the older frames stay zero."""
        self._ale.reset_game()
        self._zero_frames()
        self._past_life_change()
        for _ in range(int(self._noop_rng.integers(0, self._max_start_noops + 1))):
            self._ale.act(Action.NOOP)
        self._push_frame()
        self._step_counter = 0
        return self._obs.copy()

    def step(self, action: int) -> StepResult:
        ale, ale_action = self._ale, self._actions[action]
        score = 0
        for _ in range(self._frame_skip - 1):
            score += ale.act(ale_action)
        ale.getScreenGrayscale(self._screen_1)
        score += ale.act(ale_action)
        lives = ale.lives()
        lost_life = 0 < lives < self._lives  # the last life lost is game over, not a life loss
        if lost_life:
            self._past_life_change()
            if self._episodic_lives:
                self._zero_frames()
        self._push_frame()
        traj_done = ale.game_over() or self._step_counter >= self._horizon
        self._step_counter += 1
        reward = float((score > 0) - (score < 0)) if self._clip_reward else float(score)
        done = traj_done or (self._episodic_lives and lost_life)
        return StepResult(self._obs.copy(), reward, done, float(score), traj_done)

    def screen_rgb(self) -> np.ndarray:
        """The raw screen as the player sees it, uint8 RGB [210, 160, 3]: a video frame."""
        return self._ale.getScreenRGB()

    def clone_state(self) -> EnvState:
        """A snapshot that ``restore_state`` continues from exactly, in this or a fresh env.

        Refused with sticky actions: ale-py 0.12's saved state leaves out the previous action
        that a sticky step repeats, so a fresh env would diverge from the original.
        """
        if self._sticky > 0.0:
            raise ValueError("clone_state needs repeat_action_probability 0: ale-py does not "
                             "save the action that sticky actions repeat")
        return EnvState(game=self.game, ale=self._ale.cloneState(include_rng=True).serialize(),
                        frames=self._obs.copy(), lives=self._lives,
                        step_counter=self._step_counter,
                        noop_rng=self._noop_rng.bit_generator.state)

    def restore_state(self, state: EnvState) -> None:
        """Continue from ``state`` (from ``clone_state`` of an env of the same game and shape)."""
        if state.game != self.game or state.frames.shape != self._obs.shape:
            raise ValueError(f"state of {state.game} {state.frames.shape} does not fit this "
                             f"env ({self.game} {self._obs.shape})")
        self._ale.restoreState(ALEState(state.ale))
        self._obs[...] = state.frames
        self._lives = state.lives
        self._step_counter = state.step_counter
        self._noop_rng.bit_generator.state = state.noop_rng

    def _past_life_change(self) -> None:
        """rlpyt acts one no-op to get past the lost-life state, then counts lives again."""
        self._ale.act(Action.NOOP)
        self._lives = self._ale.lives()

    def _zero_frames(self) -> None:
        # Screen 1 is zeroed too, so the next frame is screen 2 alone (not a max), as in rlpyt.
        self._obs[:] = 0
        self._screen_1[:] = 0

    def _push_frame(self) -> None:
        """Max of the two screens, crop, bilinear 2x downscale; shift the stack by one."""
        self._ale.getScreenGrayscale(self._screen_2)
        np.maximum(self._screen_1, self._screen_2, out=self._max_screen)
        self._obs[:-1] = self._obs[1:]
        cv2.resize(self._max_screen[1:-1], (WIDTH, HEIGHT), dst=self._obs[-1],
                   interpolation=cv2.INTER_LINEAR)
