"""Atari games: which exist (ale-py ships their ROMs) and how many actions each has.

Used by config validation, before anything heavy starts, and by snapshot checks: a snapshot's
output layer size is the minimal action set of the game it was trained on.
"""

from __future__ import annotations

import difflib
import functools

from ale_py import ALEInterface, LoggerMode, roms

COMMON_GAMES = ("pong", "breakout", "space_invaders", "seaquest", "qbert", "beam_rider",
                "enduro", "ms_pacman", "asterix", "boxing", "freeway", "alien", "montezuma_revenge",
                "atlantis", "gopher", "kangaroo", "road_runner", "video_pinball")
"""Games that ``game_for_action_count`` looks through: loading all 108 ROMs takes ~20 s."""


@functools.cache
def available_games() -> tuple[str, ...]:
    """Names of the games whose ROMs ship with ale-py, in rlpyt's snake_case."""
    return tuple(sorted(roms.get_all_rom_ids()))


def new_ale() -> ALEInterface:
    """An ALE that prints only errors (its banner would clutter every log)."""
    ALEInterface.setLoggerMode(LoggerMode.Error)
    return ALEInterface()


def rom_path(game: str) -> str:
    """The ROM file of ``game``; ValueError naming close matches when there is none."""
    if game not in available_games():
        close = difflib.get_close_matches(game, available_games(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see ale-py's ROM list"
        raise ValueError(f"no ROM for '{game}' in ale-py; {hint}")
    return str(roms.get_rom_path(game))


@functools.cache
def minimal_action_count(game: str) -> int:
    """Size of the game's minimal action set: the Q-network's output size (pong 6)."""
    ale = new_ale()
    ale.loadROM(rom_path(game))
    return len(ale.getMinimalActionSet())


def game_for_action_count(n_actions: int) -> list[str]:
    """Common games whose minimal action set has ``n_actions`` actions: a snapshot's likely game."""
    return [g for g in COMMON_GAMES if g in available_games() and minimal_action_count(g) == n_actions]
