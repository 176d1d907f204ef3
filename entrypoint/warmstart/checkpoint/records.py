"""What the run folder of a snapshot records about it: game, sampler shape, replay ratio,
epsilon ramp, and the algorithm's settings (``RECORDED_SETTINGS``).

A snapshot file holds weights and counters only. Which game it played and how it was trained
is written beside it: by this project in ``manifest.json`` (and ``params.json``), by rlpyt's
logger in ``params.json`` (the config the user logged, when it names them). Reading them costs
one small JSON file per folder, so discovery can ask it of every candidate on a volume.

A record is data from outside, as a setting is: every value read from it passes the range
check of the setting it stands for (``config``'s), so a recorded ``discount`` of 5 or a
``batch_T`` of ten million is never adopted. A file that cannot be read, or is not a JSON
object, counts as absent; a value that is there but out of its setting's range is named in
``Records.problem``, and a start from that snapshot stops on it (exit 3).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import EXAMPLE_1, SamplerShape, allowed_text, settings
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
    # the first recorded value out of its setting's range, as one line naming file and key
    problem: str | None = None


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


MAX_WORLD_SIZE = 1024
"""rlpyt's synchronous runs use one process per GPU: a few, never thousands."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class _Reader:
    """Reads values out of one record file, each checked as the setting it stands for; the
    first value out of range is kept as ``problem`` (and read as absent)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problem: str | None = None

    def _refuse(self, key: str, value: Any, allowed: str) -> None:
        if self.problem is None:
            self.problem = (f"{self.file} records {key} = {value!r:.40}, which is not {allowed}; "
                            "the record is damaged")

    def setting(self, env: str, key: str, value: Any) -> Any:
        """``value`` as setting ``env`` holds it (a whole float for an integer: rlpyt's
        configs write ``1e6``); None when absent (null) or out of the setting's range."""
        if value is None:
            return None
        f = next(f for f in settings() if f.metadata["env"] == env)
        kind = str(f.type).replace(" | None", "").strip()
        if kind == "bool":
            if isinstance(value, bool):
                return value
            self._refuse(key, value, f"{allowed_text(f)} as {env} allows")
            return None
        number = _number(value)
        low, high = f.metadata["minimum"], f.metadata["maximum"]
        if (number is None or not math.isfinite(number)
                or (low is not None and number < low) or (high is not None and number > high)
                or (kind == "int" and not number.is_integer())):
            self._refuse(key, value, f"{allowed_text(f)} as {env} allows")
            return None
        return int(number) if kind == "int" else number

    def count(self, key: str, value: Any, high: int) -> int | None:
        """A whole number from 1 to ``high`` (rlpyt logs them as floats too); None if absent."""
        if value is None:
            return None
        number = _number(value)
        if number is None or not math.isfinite(number) or not 1 <= number <= high \
                or not number.is_integer():
            self._refuse(key, value, f"a whole number from 1 to {high}")
            return None
        return int(number)


def _logged_shape(logged: dict[str, Any], reader: _Reader) -> SamplerShape | None:
    """``batch_T`` x ``batch_B`` in a logged config: under ``sampler`` (rlpyt's experiment
    configs) or at the top level (a flat config); the world size where one is logged."""
    holders = [h for h in (logged.get("sampler"), logged) if isinstance(h, dict)]
    for holder in holders:
        batch_t = reader.setting("BATCH_T", "batch_T", holder.get("batch_T"))
        batch_b = reader.setting("BATCH_B", "batch_B", holder.get("batch_B"))
        if batch_t is not None and batch_b is not None:
            world = next((w for h in (*holders, logged.get("runner"))
                          if isinstance(h, dict)
                          and (w := reader.count("world_size", h.get("world_size"),
                                                 MAX_WORLD_SIZE))), 1)
            return SamplerShape(batch_t, batch_b, world)
    return None


def _logged_settings(logged: dict[str, Any], reader: _Reader) -> dict[str, Any]:
    """RECORDED_SETTINGS found in an rlpyt-style logged config (nested or flat)."""
    found = {}
    for env, (section, key) in RECORDED_SETTINGS.items():
        holders = [logged.get(section), logged.get(f"{section}_kwargs"), logged]
        if env == "DUELING":
            holders[2:2] = [logged.get("agent"), logged.get("agent_kwargs")]
        for holder in holders:
            if isinstance(holder, dict) and key in holder:
                value = reader.setting(env, key, holder[key])
                if value is not None:
                    found[env] = value
                break
    return found


def _manifest_settings(manifest: dict[str, Any], reader: _Reader) -> dict[str, Any]:
    values = dict(manifest.get("config") or {}) | dict(manifest.get("recorded_settings") or {})
    typed = {env: reader.setting(env, env, values[env])
             for env in RECORDED_SETTINGS if env in values}
    return {env: value for env, value in typed.items() if value is not None}


def manifest_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """RECORDED_SETTINGS a run of ours trained with: its config, and what it took from its
    own lineage's record (``recorded_settings``); a value out of range counts as absent
    (``manifest_problem`` names it)."""
    return _manifest_settings(manifest, _Reader("manifest.json"))


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """The first of a manifest's recorded settings out of its setting's range, if any."""
    reader = _Reader("manifest.json")
    _manifest_settings(manifest, reader)
    return reader.problem


def beside(snapshot_path: Path) -> Records:
    """Read the records in the folder of ``snapshot_path``; a damaged file counts as absent."""
    folder = snapshot_path.parent
    manifest = read_manifest(folder)
    if manifest is not None:
        reader = _Reader(str(folder / "manifest.json"))
        try:
            config = manifest.get("config", {})
            listed = {e.get("file") for e in manifest.get("snapshots", [])}
            budget = manifest["budget"]
            # a manifest from before shapes were recorded is example 1's
            shape = SamplerShape(
                reader.setting("BATCH_T", "budget.batch_T",
                               budget.get("batch_T", EXAMPLE_1.batch_T)) or EXAMPLE_1.batch_T,
                reader.setting("BATCH_B", "budget.batch_B",
                               budget.get("batch_B", EXAMPLE_1.batch_B)) or EXAMPLE_1.batch_B)
            decay_itr = reader.setting("MIN_STEPS_LEARN", "budget.eps_decay_start_itr",
                                       budget["eps_decay_start_itr"])
            found = Records(
                game=str(manifest["game"]), game_source="manifest.json",
                ours=snapshot_path.name in listed,
                replay_ratio=reader.setting("REPLAY_RATIO", "config.REPLAY_RATIO",
                                            config.get("REPLAY_RATIO")),
                batch_size=reader.setting("BATCH_SIZE", "config.BATCH_SIZE",
                                          config.get("BATCH_SIZE")),
                eps_decay_start_steps=(decay_itr or 0) * shape.steps_per_itr,
                shape=shape, shape_source="manifest.json",
                settings=_manifest_settings(manifest, reader))
            return dataclasses.replace(found, problem=reader.problem)
        except (AttributeError, KeyError, TypeError, ValueError):
            pass  # a hand-edited manifest: read what rlpyt's params.json says instead
    logged = _logged_params(folder)
    reader = _Reader(str(folder / PARAMS_JSON))
    algo = logged.get("algo") if isinstance(logged.get("algo"), dict) else {}
    game = _logged_game(logged)
    min_steps = reader.setting("MIN_STEPS_LEARN", "min_steps_learn",
                               algo.get("min_steps_learn"))
    shape = _logged_shape(logged, reader)
    return Records(
        game=game, game_source=PARAMS_JSON if game is not None else None, ours=False,
        replay_ratio=reader.setting("REPLAY_RATIO", "replay_ratio", algo.get("replay_ratio")),
        batch_size=reader.setting("BATCH_SIZE", "batch_size", algo.get("batch_size")),
        eps_decay_start_steps=min_steps,
        shape=shape, shape_source=PARAMS_JSON if shape is not None else None,
        settings=_logged_settings(logged, reader), problem=reader.problem)


def recorded_game(snapshot_path: Path) -> str | None:
    """The game the run folder of ``snapshot_path`` says it trained, if it says."""
    return beside(snapshot_path).game
