"""What the run folder of a snapshot records about it: game, sampler shape, replay ratio,
epsilon ramp, and the algorithm's settings (``RECORDED_SETTINGS``).

A snapshot file holds weights and counters only. Which game it played and how it was trained
is written beside it: by this project in ``manifest.json`` (and ``params.json``), by rlpyt's
logger in ``params.json`` (the config the user logged, when it names them). Reading them costs
one small JSON file per folder, so discovery can ask it of every candidate on a volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import EXAMPLE_1, SamplerShape, settings
from . import safe_read
from .manifest import read_manifest

PARAMS_JSON = "params.json"


@dataclass(frozen=True)
class Records:
    """What is known about a snapshot from its folder; None where nothing says."""

    game: str | None
    game_source: str | None  # the file that names the game ("manifest.json", "params.json")
    ours: bool  # written by this project: its counters are never reset
    replay_ratio: float | None
    batch_size: int | None
    eps_decay_start_steps: int | None  # cum_steps where the lineage's epsilon ramp starts
    shape: SamplerShape | None = None  # the run's sampler shape (world size where logged)
    shape_source: str | None = None  # the file that records the shape
    # RECORDED_SETTINGS' values the folder records, by variable name, read as the config does
    settings: dict[str, Any] = field(default_factory=dict)


RECORDED_SETTINGS: dict[str, tuple[str, str]] = {
    "EPS_STEPS": ("algo", "eps_steps"),
    "EPS_FINAL": ("agent", "eps_final"),
    "BATCH_SIZE": ("algo", "batch_size"),
    "REPLAY_RATIO": ("algo", "replay_ratio"),
    "TARGET_UPDATE_INTERVAL": ("algo", "target_update_interval"),
    "CLIP_GRAD_NORM": ("algo", "clip_grad_norm"),
    "DISCOUNT": ("algo", "discount"),
    "N_STEP_RETURN": ("algo", "n_step_return"),
    "DOUBLE_DQN": ("algo", "double_dqn"),
    "PRIORITIZED_REPLAY": ("algo", "prioritized_replay"),
    "DUELING": ("model", "dueling"),
}
"""The settings a warm start takes from its lineage's record when the user leaves them unset,
and where rlpyt's logged config keeps each: under its section (``algo``, ``agent``, ``model``,
as rlpyt's experiment configs nest them, or ``<section>_kwargs``), or at the top level (a flat
config). Our own params.json logs ``dueling`` under ``agent``, as example 1 does."""


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


def _count(value: Any) -> int | None:
    """A whole number >= 1 (rlpyt configs often log them as floats, ``5e4``), else None."""
    number = _number(value)
    return int(number) if number is not None and number >= 1 and number.is_integer() else None


def _logged_shape(logged: dict[str, Any]) -> SamplerShape | None:
    """``batch_T`` x ``batch_B`` in a logged config: under ``sampler`` (rlpyt's experiment
    configs) or at the top level (a flat config); the world size where one is logged."""
    holders = [h for h in (logged.get("sampler"), logged) if isinstance(h, dict)]
    for holder in holders:
        batch_t, batch_b = _count(holder.get("batch_T")), _count(holder.get("batch_B"))
        if batch_t is not None and batch_b is not None:
            world = next((w for h in (*holders, logged.get("runner"))
                          if isinstance(h, dict) and (w := _count(h.get("world_size")))), 1)
            return SamplerShape(batch_t, batch_b, world)
    return None


def _typed(env: str, value: Any) -> Any:
    """``value`` as the setting ``env`` holds it (a whole float for an integer: rlpyt's
    configs write ``1e6``), or None when it is not a value that setting allows."""
    f = next(f for f in settings() if f.metadata["env"] == env)
    kind = str(f.type).replace(" | None", "").strip()
    if kind == "bool":
        return value if isinstance(value, bool) else None
    number = _number(value)
    minimum = f.metadata["minimum"]
    if number is None or (minimum is not None and number < minimum) or not math.isfinite(number):
        return None
    if kind == "int":
        return int(number) if number.is_integer() else None
    return number


def _logged_settings(logged: dict[str, Any]) -> dict[str, Any]:
    """RECORDED_SETTINGS found in an rlpyt-style logged config (nested or flat)."""
    found = {}
    for env, (section, key) in RECORDED_SETTINGS.items():
        holders = [logged.get(section), logged.get(f"{section}_kwargs"), logged]
        if env == "DUELING":
            holders[2:2] = [logged.get("agent"), logged.get("agent_kwargs")]
        for holder in holders:
            if isinstance(holder, dict) and key in holder:
                value = _typed(env, holder[key])
                if value is not None:
                    found[env] = value
                break
    return found


def manifest_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """RECORDED_SETTINGS a run of ours trained with: its config, and what it took from its
    own lineage's record (``recorded_settings``)."""
    values = dict(manifest.get("config") or {}) | dict(manifest.get("recorded_settings") or {})
    typed = {env: _typed(env, values[env]) for env in RECORDED_SETTINGS if env in values}
    return {env: value for env, value in typed.items() if value is not None}


def beside(snapshot_path: Path) -> Records:
    """Read the records in the folder of ``snapshot_path``; a damaged file counts as absent."""
    folder = snapshot_path.parent
    manifest = read_manifest(folder)
    if manifest is not None:
        try:
            config = manifest.get("config", {})
            listed = {e.get("file") for e in manifest.get("snapshots", [])}
            budget = manifest["budget"]
            # a manifest from before shapes were recorded is example 1's
            shape = SamplerShape(int(budget.get("batch_T", EXAMPLE_1.batch_T)),
                                 int(budget.get("batch_B", EXAMPLE_1.batch_B)))
            return Records(
                game=str(manifest["game"]), game_source="manifest.json",
                ours=snapshot_path.name in listed,
                replay_ratio=_number(config.get("REPLAY_RATIO")),
                batch_size=_count(config.get("BATCH_SIZE")),
                eps_decay_start_steps=int(budget["eps_decay_start_itr"]) * shape.steps_per_itr,
                shape=shape, shape_source="manifest.json",
                settings=manifest_settings(manifest))
        except (AttributeError, KeyError, TypeError, ValueError):
            pass  # a hand-edited manifest: read what rlpyt's params.json says instead
    logged = _logged_params(folder)
    algo = logged.get("algo") if isinstance(logged.get("algo"), dict) else {}
    game = _logged_game(logged)
    min_steps = _number(algo.get("min_steps_learn"))
    shape = _logged_shape(logged)
    return Records(
        game=game, game_source=PARAMS_JSON if game is not None else None, ours=False,
        replay_ratio=_number(algo.get("replay_ratio")),
        batch_size=_count(algo.get("batch_size")),
        eps_decay_start_steps=None if min_steps is None else int(min_steps),
        shape=shape, shape_source=PARAMS_JSON if shape is not None else None,
        settings=_logged_settings(logged))


def recorded_game(snapshot_path: Path) -> str | None:
    """The game the run folder of ``snapshot_path`` says it trained, if it says."""
    return beside(snapshot_path).game
