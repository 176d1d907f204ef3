"""What the run folder of a snapshot records about it: game, replay ratio, epsilon ramp.

A snapshot file holds weights and counters only. Which game it played and how it was trained
is written beside it: by this project in ``manifest.json`` (and ``params.json``), by rlpyt's
logger in ``params.json`` (the config the user logged, when it names them). Reading them costs
one small JSON file per folder, so discovery can ask it of every candidate on a volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import SAMPLER_BATCH
from . import safe_read
from .run import PARAMS_JSON, read_manifest


@dataclass(frozen=True)
class Records:
    """What is known about a snapshot from its folder; None where nothing says."""

    game: str | None
    game_source: str | None  # the file that names the game ("manifest.json", "params.json")
    ours: bool  # written by this project: its counters are never reset
    replay_ratio: float | None
    batch_size: int | None
    eps_decay_start_itr: int | None  # where the lineage's epsilon ramp starts


def _logged_params(folder: Path) -> dict[str, Any]:
    """params.json as a dict; empty when absent or not a JSON object (rlpyt's or ours)."""
    try:
        logged = safe_read.read_json(folder / PARAMS_JSON)
    except (OSError, ValueError):  # absent, a special file, not JSON, nested too deep
        return {}
    return logged if isinstance(logged, dict) else {}


def _logged_game(logged: dict[str, Any]) -> str | None:
    """The game in a logged config: top level (rlpyt example 1, ours) or ``env.game`` /
    ``env_kwargs.game`` (rlpyt's config-dict experiments)."""
    for holder in (logged, logged.get("env"), logged.get("env_kwargs")):
        if isinstance(holder, dict) and isinstance(holder.get("game"), str):
            return holder["game"]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def beside(snapshot_path: Path) -> Records:
    """Read the records in the folder of ``snapshot_path``; a damaged file counts as absent."""
    folder = snapshot_path.parent
    manifest = read_manifest(folder)
    if manifest is not None:
        try:
            config = manifest.get("config", {})
            listed = {e.get("file") for e in manifest.get("snapshots", [])}
            batch = _number(config.get("BATCH_SIZE"))
            return Records(
                game=str(manifest["game"]), game_source="manifest.json",
                ours=snapshot_path.name in listed,
                replay_ratio=_number(config.get("REPLAY_RATIO")),
                batch_size=None if batch is None or batch < 1 else int(batch),
                eps_decay_start_itr=int(manifest["budget"]["eps_decay_start_itr"]))
        except (AttributeError, KeyError, TypeError, ValueError):
            pass  # a hand-edited manifest: read what rlpyt's params.json says instead
    logged = _logged_params(folder)
    algo = logged.get("algo") if isinstance(logged.get("algo"), dict) else {}
    game = _logged_game(logged)
    min_steps = _number(algo.get("min_steps_learn"))
    batch = _number(algo.get("batch_size"))
    return Records(
        game=game, game_source=PARAMS_JSON if game is not None else None, ours=False,
        replay_ratio=_number(algo.get("replay_ratio")),
        batch_size=None if batch is None or batch < 1 else int(batch),
        eps_decay_start_itr=None if min_steps is None else int(min_steps) // SAMPLER_BATCH)


def recorded_game(snapshot_path: Path) -> str | None:
    """The game the run folder of ``snapshot_path`` says it trained, if it says."""
    return beside(snapshot_path).game
