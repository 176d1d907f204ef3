"""Atari games: which exist (ale-py ships their ROMs) and how many actions each has.

Used by config validation, before anything heavy starts, and by snapshot checks: a snapshot's
output layer size is the minimal action set of the game it was trained on. rlpyt names games
the way atari_py does (snake_case: ``pong``, ``space_invaders``, ``montezuma_revenge``), and
ale-py's ROM ids follow the same scheme, so a name means the same game in both.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import io
import re

from ale_py import ALEInterface, LoggerMode, roms

COMMON_ACTION_COUNTS = {
    "pong": 6, "breakout": 4, "space_invaders": 6, "seaquest": 18, "qbert": 6, "beam_rider": 9,
    "enduro": 9, "ms_pacman": 9, "asterix": 9, "boxing": 18, "freeway": 3, "alien": 18,
    "montezuma_revenge": 18, "atlantis": 4, "gopher": 8, "kangaroo": 18, "road_runner": 18,
    "video_pinball": 9}
"""The minimal action set's size of widely benchmarked games (ale-py 0.12.1), which
``game_for_action_count`` looks through for a snapshot's likely game. A table, not the ROMs:
loading one takes ~0.1-0.2 s, these 18 about 2 s of every ``inspect`` (tests/test_atari_env.py
holds the table to ale-py's answer)."""


def new_ale() -> ALEInterface:
    """An ALE that prints only errors: its banner would clutter every log and CLI answer."""
    ALEInterface.setLoggerMode(LoggerMode.Error)
    return ALEInterface()


def _quiet_rom_path(game: str) -> str | None:
    """ale-py's path for ``game``, or None when it has no such ROM.

    ``get_rom_path`` prints a line when ``ALE_ROMS_DIR`` is set; that line is swallowed.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            path = roms.get_rom_path(game)
        except OSError:  # ALE_ROMS_DIR lacks the file, or its md5 is not ale-py's
            return None
    return None if path is None else str(path)


@functools.cache
def _rom_paths() -> dict[str, str]:
    """Loadable game -> ROM file, sorted by name."""
    # ale-py 0.12.1 bundles combat, joust, maze_craze and warlords, but loading one of them
    # outside its multi-agent API ends the whole process (exit status 1) instead of raising;
    # isSupportedROM answers None for exactly those, cheaply, without loading.
    ale = new_ale()
    found = {}
    for game in sorted(roms.get_all_rom_ids()):
        path = _quiet_rom_path(game)
        if path is not None and ale.isSupportedROM(path) is not None:
            found[game] = path
    return found


_FOREIGN_ID = re.compile(
    r"(?:ALE/)?(?P<name>[A-Za-z0-9_]+?)(?:-ram)?(?:NoFrameskip|Deterministic)?(?:-v\d+)?")
"""Game ids as gym, gymnasium, ALE, Stable-Baselines3 and rl-zoo write them: ``PongNoFrameskip-v4``,
``ALE/Pong-v5``, ``Pong-ram-v0``, ``BreakoutDeterministic-v4``; the part before the suffixes is
the game's PascalCase name (ale-py's ``SpaceInvaders`` for rlpyt's ``space_invaders``)."""


def _squashed(name: str) -> str:
    """A game name without case or separators: PascalCase and snake_case meet here."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _base_name(game_id: str) -> str:
    """``PongNoFrameskip-v4`` -> ``Pong``; a plain name stays as it is."""
    found = _FOREIGN_ID.fullmatch(game_id)
    return found.group("name") if found else game_id


def rlpyt_name(game_id: str) -> str:
    """rlpyt's snake_case name for a game id users bring from another library, else the id.

    ``PongNoFrameskip-v4``, ``ALE/Pong-v5`` and ``Pong-v5`` all mean ``pong``; an id that names
    no game comes back unchanged for ``rom_path`` to refuse with a "did you mean".
    """
    if game_id in _rom_paths():
        return game_id
    by_squashed = {_squashed(game): game for game in _rom_paths()}
    return by_squashed.get(_squashed(_base_name(game_id)), game_id)


def available_games() -> list[str]:
    """Sorted names of the games this ale-py can load, in rlpyt's snake_case."""
    return list(_rom_paths())


def rom_path(game: str) -> str:
    """The ROM file of ``game``; ValueError naming close matches when there is none."""
    if game not in _rom_paths():
        raise ValueError(f"{game!r} is not a known Atari game: {_unknown_game_hint(game)}")
    return _rom_paths()[game]


def _unknown_game_hint(game: str) -> str:
    if not _rom_paths():
        return "ale-py found no ROMs at all (is ALE_ROMS_DIR set to the wrong folder?)"
    if game in roms.get_all_rom_ids():
        if _quiet_rom_path(game) is None:
            return "its ROM file is missing or not ale-py's (is ALE_ROMS_DIR set?)"
        return "ale-py ships this ROM but cannot load it for single-player play"
    by_squashed = {_squashed(name): name for name in _rom_paths()}
    close = difflib.get_close_matches(_squashed(_base_name(game)), list(by_squashed), n=3)
    if close:
        return f"did you mean {', '.join(by_squashed[c] for c in close)}?"
    return f"ale-py's games include {', '.join(list(_rom_paths())[:6])}, ..."


@functools.cache
def minimal_action_count(game: str) -> int:
    """Size of the game's minimal action set: the Q-network's output size (pong 6)."""
    ale = new_ale()
    ale.loadROM(rom_path(game))
    return len(ale.getMinimalActionSet())


def game_for_action_count(n_actions: int) -> list[str]:
    """Common games whose minimal action set has ``n_actions`` actions: a snapshot's likely game.

    Only ``COMMON_ACTION_COUNTS`` are looked through (see there why); the answer is a hint,
    not proof.
    """
    return [game for game, count in COMMON_ACTION_COUNTS.items() if count == n_actions]
