"""A games x seeds sweep as a Kubernetes Indexed Job: the pod's index picks its game and seed.

An Indexed Job gives every pod ``JOB_COMPLETION_INDEX`` (0 .. completions-1) and nothing else
that differs, and a Job cannot template one claim or one env per index. So the sweep's pods all
carry the same ``SWEEP_GAMES`` and ``SWEEP_SEEDS`` (comma-separated lists), and before the config
is read each pod turns its index into ``GAME``, ``SEED`` and ``RUN_NAME``: index
``i`` trains ``games[i // len(seeds)]`` with ``seeds[i % len(seeds)]`` in the run folder
``<RUN_NAME>-<game>-s<seed>`` (``RUN_NAME`` being the Job's name; ``sweep`` without one). A
restarted pod of an index therefore resumes that index's own run and budget. ``completions``
must be ``len(games) * len(seeds)``: an index past the grid is a configuration error (exit 2).
Game names are checked where every GAME is, when the config is read.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from .config import ENV_PREFIX
from .errors import ConfigError

GAMES = "SWEEP_GAMES"
SEEDS = "SWEEP_SEEDS"
INDEX = "JOB_COMPLETION_INDEX"


def _items(environ: MutableMapping[str, str], name: str) -> list[str]:
    items = [item.strip() for item in environ.get(name, "").split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{name} is empty; give a comma-separated list (e.g. {name}="
                          f"{'pong,breakout' if name == GAMES else '0,1,2'}).")
    return items


def grid(environ: MutableMapping[str, str]) -> list[tuple[str, int]]:
    """The sweep's (game, seed) pairs in index order."""
    names = _items(environ, GAMES)
    seed_texts = _items(environ, SEEDS)
    if not all(text.isdigit() for text in seed_texts):
        raise ConfigError(f"{SEEDS}={environ[SEEDS]!r}: seeds must be whole numbers >= 0, "
                          "comma-separated.")
    return [(name, int(seed)) for name in names for seed in seed_texts]


def apply(environ: MutableMapping[str, str]) -> str | None:
    """Set GAME, SEED and RUN_NAME for this pod's index when a sweep is configured; returns a
    line saying what this index trains, or None outside a sweep."""
    if not environ.get(GAMES) and not environ.get(SEEDS):
        return None
    for taken in ("GAME", "SEED"):
        if environ.get(taken) or environ.get(ENV_PREFIX + taken):
            raise ConfigError(f"{taken} is set together with {GAMES}/{SEEDS}: a sweep sets "
                              f"{taken} from its index; remove one of them.")
    pairs = grid(environ)
    index_text = environ.get(INDEX, "")
    if not index_text.isdigit():
        raise ConfigError(f"{GAMES}/{SEEDS} need {INDEX} (set by an Indexed Job) as a whole "
                          f"number, not {index_text!r}.")
    index = int(index_text)
    if index >= len(pairs):
        raise ConfigError(f"{INDEX}={index} but the sweep has {len(pairs)} runs "
                          f"({GAMES} x {SEEDS}); set the Job's completions to {len(pairs)}.")
    game, seed = pairs[index]
    name_key = ENV_PREFIX + "RUN_NAME" if environ.get(ENV_PREFIX + "RUN_NAME") else "RUN_NAME"
    run_name = f"{environ.get(name_key) or 'sweep'}-{game}-s{seed}"
    environ.update({"GAME": game, "SEED": str(seed), name_key: run_name})
    return (f"sweep index {index} of {len(pairs)}: GAME={game} SEED={seed} "
            f"RUN_NAME={run_name}")
