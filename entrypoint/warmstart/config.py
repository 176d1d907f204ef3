"""Training configuration: one typed object, read from environment variables and flags.

Every field carries its environment variable, default, allowed values and a one-line help;
``warmstart train --help`` and the table in docs/settings.md are generated from the same
fields (a test keeps the page in step), so the three never drift. Validation happens here, before anything
heavy is imported or any file is touched: a bad value is one ``ConfigError`` line naming the
variable, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import games
from .errors import ConfigError

ENV_PREFIX = "WARMSTART_"
"""Every setting may also be given as ``WARMSTART_<NAME>``; an unknown ``WARMSTART_*`` variable
is an error, so a typo in a namespaced name cannot be silently ignored."""



@dataclass(frozen=True)
class SamplerShape:
    """What one sampler iteration is: ``batch_T`` time steps of ``batch_B`` environments, in
    each of ``world_size`` processes (rlpyt's synchronous multi-GPU runs; 1 here).

    A snapshot's ``itr`` counts these iterations and ``cum_steps = itr * steps_per_itr``; every
    schedule rlpyt keeps per iteration (epsilon, beta, updates, log points) depends on it.
    """

    batch_T: int
    batch_B: int
    world_size: int = 1

    @property
    def sampler_batch(self) -> int:
        """Env steps one process samples per iteration: what its updates are counted from."""
        return self.batch_T * self.batch_B

    @property
    def steps_per_itr(self) -> int:
        """Env steps the whole run adds to ``cum_steps`` per iteration."""
        return self.sampler_batch * self.world_size

    def __str__(self) -> str:
        world = f" x {self.world_size} processes" if self.world_size > 1 else ""
        return f"batch_T={self.batch_T} x batch_B={self.batch_B}{world}"


EXAMPLE_1 = SamplerShape(batch_T=4, batch_B=1)
"""rlpyt example 1's serial sampler: a cold start's shape unless BATCH_T/BATCH_B say otherwise."""


def updates_per_iteration(replay_ratio: float, sampler_batch_size: int, batch_size: int) -> int:
    """Gradient updates per sampler iteration, as rlpyt's ``DQN.initialize`` computes them.

    The engines train with it; the checkpoint store uses it to tell how many updates a
    snapshot's ``cum_steps`` allow (a reset-counter chain has more)."""
    return max(1, round(replay_ratio * sampler_batch_size / batch_size))


MAX_STEPS = 10**12
"""Upper bound of every count of env steps: 250 times rlpyt's longest Atari runs (200 million
frames = 50 million steps), far below where a float or a step counter loses precision."""
SEED_MAX = 2**32 - 2
"""rlpyt seeds numpy's legacy generator (which takes 0..2**32 - 1) with SEED and its sampler
with SEED + 1, so this is the largest seed every generator of both engines takes."""
MAX_UPDATES_PER_ITERATION = 1024
"""``updates_per_iteration`` above this is a typo, not a replay ratio (rlpyt's is 1 or 2)."""
MAX_UPDATES = MAX_STEPS * MAX_UPDATES_PER_ITERATION
"""Upper bound of an optimizer's update count (Adam's ``step``): the most a lineage of
MAX_STEPS steps can make. A snapshot's counters beyond these bounds are damage."""
MAX_BATCH_T = 1024
MAX_BATCH_B = 1024
"""Sampler shapes far beyond rlpyt's Atari configs (T <= 8, B <= 16) but still allocatable."""

COLD_MIN_STEPS_LEARN = 50_000
WARM_MIN_STEPS_LEARN = 1_000

EVAL_EPSILON = 0.001
"""Evaluation's epsilon: rlpyt's ``AtariDqnAgent`` in eval mode."""
MAX_EPISODE_STEPS = 27_000
"""An evaluation game is cut after this many agent steps: rlpyt's ``AtariEnv`` horizon,
30 minutes of play (27,000 steps x 4 frames at 60 Hz)."""


def _setting(env: str, default: Any, help: str, *, choices: tuple[str, ...] = (),
             minimum: float | None = None, maximum: float | None = None, kind: str = "") -> Any:
    """A dataclass field that knows its environment variable, limits and help line. Numbers
    are always finite; ``minimum`` and ``maximum`` bound them, both included."""
    return field(default=default, metadata={
        "env": env, "help": help, "choices": choices, "minimum": minimum, "maximum": maximum,
        "kind": kind})


@dataclass(frozen=True)
class Config:
    """Everything a training job is told from outside. Field order is the settings table's order."""

    ckpt_dir: Path = _setting(
        "CKPT_DIR", Path("/ckpt"),
        "Checkpoint volume: the newest snapshot under it is the start point; runs are written here.")
    init_snapshot: Path | None = _setting(
        "INIT_SNAPSHOT", None,
        "Start from this params.pkl / itr_N.pkl instead of the newest snapshot in CKPT_DIR.")
    strict_snapshots: bool = _setting(
        "STRICT_SNAPSHOTS", False,
        "Stop on an unreadable snapshot instead of falling back to the newest readable one.")
    progress_steps: int | None = _setting(
        "PROGRESS_STEPS", None,
        "Env steps the warm-start snapshot's lineage really trained, when you know it better than "
        "its counters (e.g. the sum of a chain of rlpyt runs' steps): the new run's cum_steps, "
        "epsilon and beta continue from it. Unset: the snapshot's cum_steps, or an estimate from "
        "its optimizer's update count when rlpyt's warm start reset them.", minimum=0,
        maximum=MAX_STEPS)
    run_name: str | None = _setting(
        "RUN_NAME", None,
        "Name of this job's run folder. Set it (e.g. to the Kubernetes Job name) so a restarted "
        "job resumes its own run; unset, every start makes a new run_N.")
    lock_wait: int = _setting(
        "LOCK_WAIT", 180,
        "Seconds to wait for another trainer still writing this run (a replaced pod writing "
        "its final snapshot) before exiting 5; longer than the manifests' 120 s grace period.",
        minimum=0, maximum=86_400)
    volume_stall_warn: int = _setting(
        "VOLUME_STALL_WARN", 30,
        "Seconds a checkpoint-volume call may go unanswered before the log says it stalled "
        "(again every as many seconds while it lasts). After SIGTERM/SIGINT, a call stalled "
        "this long ends the trainer with exit 11 and no final snapshot; at most 60, to fit the "
        "manifests' 120 s grace period.", minimum=1, maximum=60)
    game: str = _setting(
        "GAME", "pong", "Atari game, rlpyt's snake_case name; a gym, gymnasium or ALE id "
        "(PongNoFrameskip-v4, ALE/Pong-v5) is read as that name, said in the log.", kind="game")
    steps: int = _setting(
        "STEPS", 50_000,
        "Env steps this run trains from its start (rounded up to whole sampler iterations of "
        "BATCH_T x BATCH_B steps). "
        "Re-run a RUN_NAME run with a larger STEPS to extend it to the new total; a smaller one "
        "never shortens it.", minimum=1, maximum=MAX_STEPS)
    batch_t: int | None = _setting(
        "BATCH_T", None,
        "Time steps per sampler iteration (rlpyt's batch_T). Unset: a warm start keeps its "
        "lineage's (recorded beside the snapshot, else cum_steps / itr), a cold start uses 4 "
        "(rlpyt example 1). Another than the lineage's converts its counters: cum_steps "
        "continues, itr counts the new iterations.", minimum=1, maximum=MAX_BATCH_T)
    batch_b: int | None = _setting(
        "BATCH_B", None,
        "Environments stepped together per sampler iteration (rlpyt's batch_B), each with its "
        "own replay stream. Unset: a warm start keeps its lineage's, a cold start uses 1.",
        minimum=1, maximum=MAX_BATCH_B)
    seed: int = _setting("SEED", 0, "Seeds torch, numpy, the emulator and the start no-ops.",
                         minimum=0, maximum=SEED_MAX)
    device: str = _setting("DEVICE", "auto", "Where the network runs; auto picks cuda when present.",
                           choices=("auto", "cpu", "cuda"))
    cuda_graph: bool = _setting(
        "CUDA_GRAPH", True,
        "On a CUDA device, capture the native engine's DQN update once as a CUDA graph and "
        "replay it (eager if the capture fails, said in the log); 0 runs it eagerly. Ignored "
        "on the CPU.")
    engine: str = _setting(
        "ENGINE", "auto", "Training engine; auto = rlpyt where importable, else native.",
        choices=("auto", "native", "rlpyt"))
    snapshot_mode: str = _setting(
        "SNAPSHOT_MODE", "last",
        "As rlpyt: last = params.pkl at every log point; all = itr_N.pkl at every log point; "
        "gap = itr_N.pkl every SNAPSHOT_EVERY steps; last+gap = both.",
        choices=("last", "all", "gap", "last+gap"))
    snapshot_every: int = _setting(
        "SNAPSHOT_EVERY", 100_000, "Env steps between itr_N.pkl files in the gap modes.", minimum=1,
        maximum=MAX_STEPS)
    log_every: int = _setting(
        "LOG_EVERY", 10_000,
        "Env steps between log points (a progress.csv row, and params.pkl in the last modes).",
        minimum=1, maximum=MAX_STEPS)
    learning_curve: bool = _setting(
        "LEARNING_CURVE", True,
        "Draw learning_curve.png into the run folder when the run ends (matplotlib); 0 skips "
        "it (e.g. many short runs): `warmstart lineage --curve` draws it later.")
    keep_snapshots: int = _setting(
        "KEEP_SNAPSHOTS", 0,
        "Keep only the newest N itr_N.pkl files of a run (never the one it started from); "
        "0 keeps all.", minimum=0, maximum=1_000_000)
    write_mode: str = _setting(
        "WRITE_MODE", "auto",
        "How snapshots and records are replaced: rename = temp file then rename (local disk, "
        "NFS, s3fs, gcsfuse); object = write-once itr_N.pkl and manifest versions, for volumes "
        "without rename (Mountpoint for S3); auto = rename where a probe of CKPT_DIR finds it "
        "works, else object (docs/volumes.md).",
        choices=("auto", "rename", "object"))
    resume_state: str = _setting(
        "RESUME_STATE", "off",
        "full = each snapshot also saves resume-itr_N.npz beside it (replay, RNG, emulator and "
        "schedule state), so a restarted run continues bit-exactly (native engine; about 0.1 GB "
        "per million transitions); off = a restart refills the replay.",
        choices=("off", "full"))
    torch_threads: int = _setting(
        "TORCH_THREADS", 0,
        "torch intra-op threads; 0 = every CPU the process may use (its affinity, capped by a "
        "container's CPU quota). More than those is honoured, with a warning in the log.",
        minimum=0, maximum=1024)
    env_workers: int = _setting(
        "ENV_WORKERS", 0,
        "Worker processes stepping the BATCH_B environments in parallel (rlpyt's CpuSampler); "
        "0 = one per CPU the process may use, at most BATCH_B; 1 = in the trainer's process. "
        "Results do not depend on it.", minimum=0, maximum=1024)
    deterministic: bool = _setting(
        "DETERMINISTIC", False,
        "Make torch pick deterministic kernels (use_deterministic_algorithms, cuDNN "
        "deterministic, CUBLAS_WORKSPACE_CONFIG) for repeatable GPU runs; CPU runs repeat "
        "without it.")
    lr: float | None = _setting(
        "LR", None,
        "Adam learning rate. Unset: a warm start keeps the snapshot's lr, a cold start uses 2.5e-4.",
        minimum=0.0, maximum=1.0)
    batch_size: int = _setting("BATCH_SIZE", 32, "Minibatch size of each DQN update.", minimum=1,
                               maximum=65_536)
    replay_size: int = _setting(
        "REPLAY_SIZE", 1_000_000, "Replay capacity in transitions (about 8.4 KB each). Checked "
        "at the start, with BATCH_SIZE and the env workers, against the memory the process may "
        "use (its cgroup limit, else the machine's): the replay counts at the size it reaches "
        "by the run's target; a plan that cannot fit is refused (exit 2) and every start logs "
        "it.",
        minimum=100, maximum=1_000_000_000)
    min_steps_learn: int | None = _setting(
        "MIN_STEPS_LEARN", None,
        f"Fresh env steps before updates start. Unset: {COLD_MIN_STEPS_LEARN} cold (rlpyt), "
        f"{WARM_MIN_STEPS_LEARN} warm (the replay restarts empty).", minimum=0, maximum=MAX_STEPS)
    replay_ratio: float = _setting(
        "REPLAY_RATIO", 8.0, "Samples trained per env step: updates/iteration = "
        "max(1, round(REPLAY_RATIO * BATCH_T * BATCH_B / BATCH_SIZE)).", minimum=0.0, maximum=1024.0)
    target_update_interval: int = _setting(
        "TARGET_UPDATE_INTERVAL", 312, "Updates between target-network copies.", minimum=1,
        maximum=MAX_STEPS)
    n_step_return: int = _setting("N_STEP_RETURN", 1, "n of the n-step return.", minimum=1,
                                  maximum=100)
    clip_grad_norm: float = _setting(
        "CLIP_GRAD_NORM", 10.0, "Gradients are clipped to this global norm before each update "
        "(rlpyt's clip_grad_norm).", minimum=0.0, maximum=1e12)
    double_dqn: bool = _setting("DOUBLE_DQN", False, "Double DQN targets.")
    dueling: bool = _setting("DUELING", False, "Dueling head (must match the snapshot).")
    prioritized_replay: bool = _setting(
        "PRIORITIZED_REPLAY", False, "Proportional prioritized replay (alpha 0.6, beta 0.4 -> 1).")
    eps_final: float = _setting("EPS_FINAL", 0.01, "Final exploration epsilon.", minimum=0.0,
                                maximum=1.0)
    eps_steps: int = _setting(
        "EPS_STEPS", 1_000_000, "cum_steps at which epsilon reaches EPS_FINAL.", minimum=1,
        maximum=MAX_STEPS)
    discount: float = _setting("DISCOUNT", 0.99, "Discount factor gamma.", minimum=0.0, maximum=1.0)
    eval_every: int = _setting(
        "EVAL_EVERY", 0,
        "Env steps between evaluations: EVAL_EPISODES whole games at epsilon 0.001, played at "
        "the first log point past each multiple and at the end, logged as Eval/... in "
        "progress.csv; 0 = off.", minimum=0, maximum=MAX_STEPS)
    eval_episodes: int = _setting(
        "EVAL_EPISODES", 10, "Games per evaluation, here and in `warmstart eval`.", minimum=1,
        maximum=100_000)

    # the settings the user gave (flag or environment), by variable name; not a setting itself
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def iterations(self, shape: SamplerShape) -> int:
        """Sampler iterations this job runs in ``shape``: ``STEPS`` rounded up to whole ones."""
        return math.ceil(self.steps / shape.steps_per_itr)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view, keyed by environment variable, for manifests and params.json."""
        out: dict[str, Any] = {}
        for f in settings():
            value = getattr(self, f.name)
            out[f.metadata["env"]] = str(value) if isinstance(value, Path) else value
        return out


def settings() -> tuple[dataclasses.Field, ...]:
    """The config's fields in the settings table's order; each has ``metadata['env']`` and ``['help']``."""
    return tuple(f for f in dataclasses.fields(Config) if "env" in f.metadata)


def flag_name(f: dataclasses.Field) -> str:
    """``--steps`` for STEPS: the CLI flag that overrides an environment variable."""
    return "--" + f.metadata["env"].lower().replace("_", "-")


def default_text(f: dataclasses.Field) -> str:
    """How docs/settings.md and ``--help`` show a default."""
    if f.default is None:
        return "unset"
    if isinstance(f.default, bool):
        return "1" if f.default else "0"
    return str(f.default)


def allowed_text(f: dataclasses.Field) -> str:
    """What a value may be, in words, for error messages and docs/settings.md."""
    meta = f.metadata
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    if meta["kind"] == "game":
        return "a game name as in rlpyt (pong, breakout, space_invaders, ...)"
    kind = _base_type(f)
    if kind is bool:
        return "1/0, true/false, yes/no"
    if kind is Path:
        return "a path"
    if kind is str:
        return (f"a name of letters, digits, '-', '_' and '.', not starting with '.', at most "
                f"{NAME_MAX} bytes")
    if kind is int:
        low, high = meta["minimum"], meta["maximum"]
        noun = "a whole number" if low is None else f"an integer from {_digits(low)}"
        return noun + (f" to {_digits(high)}" if high is not None else "")
    if meta["maximum"] is not None:
        return f"a number from {meta['minimum']:g} to {meta['maximum']:g}"
    return f"a finite number >= {meta['minimum']:g}"


def _digits(value: float) -> str:
    """An integer as a user may type it back: ``1_000_000`` for long ones (the parser takes it)."""
    return f"{int(value):_}" if value >= 10_000 else str(int(value))


def _base_type(f: dataclasses.Field) -> type:
    """The declared type without ``| None`` (annotations are strings under __future__)."""
    name = str(f.type).replace(" | None", "").strip()
    return {"int": int, "float": float, "bool": bool, "str": str, "Path": Path}[name]


def _parse_int(text: str) -> int:
    """Integers, also written as rlpyt users do (``1e6``, ``50_000``) when the decimal value is
    exactly whole: read as a decimal, never rounded through a float (``1e99`` is 10**99, which
    the range check then refuses, not a float near it; ``1.0000000000000001`` is not whole)."""
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        value = decimal.Decimal(text.replace("_", ""))
    except decimal.InvalidOperation:
        raise ValueError(text) from None
    # far past every maximum: refused before int() would spell out a huge power of ten
    if not value.is_finite() or value.adjusted() > 30 or value != value.to_integral_value():
        raise ValueError(text)
    return int(value)


def _parse_float(text: str) -> float:
    """A finite float: ``inf`` and ``nan`` are never a setting's value."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


NAME_MAX = 200
"""Longest RUN_NAME: a folder name, which file systems cap at 255 bytes."""


def _parse_name(text: str) -> str:
    if (not text or not all(c.isalnum() or c in "-_." for c in text) or text.startswith(".")
            or len(text.encode("utf-8", "surrogateescape")) > NAME_MAX):
        raise ValueError(text)
    return text


def _parse_path(text: str) -> Path:
    if "\0" in text:  # no file name holds one; os calls would raise on it
        raise ValueError(text)
    return Path(text)


_PARSERS: dict[type, Callable[[str], Any]] = {
    int: _parse_int, float: _parse_float, bool: _parse_bool, Path: _parse_path, str: _parse_name}


def _parse_game(raw: str, log: Callable[[str], None]) -> str:
    """rlpyt's name for ``raw``; a gym/ALE id (``PongNoFrameskip-v4``) is mapped, said in the log."""
    name = games.rlpyt_name(raw)
    try:
        games.minimal_action_count(name)
    except ValueError as err:
        raise ConfigError(f"GAME={err}") from None
    if name != raw:
        log(f"GAME={raw} is rlpyt's {name}; using {name}")
    return name


def _parse_value(f: dataclasses.Field, raw: str, log: Callable[[str], None]) -> Any:
    env = f.metadata["env"]
    bad = ConfigError(f"{env}={raw!r} is not valid: expected {allowed_text(f)}.")
    if f.metadata["choices"]:
        if raw not in f.metadata["choices"]:
            raise bad
        return raw
    if f.metadata["kind"] == "game":
        return _parse_game(raw, log)
    try:
        value = _PARSERS[_base_type(f)](raw.strip())
    except (ValueError, OverflowError):
        raise bad from None
    minimum, maximum = f.metadata["minimum"], f.metadata["maximum"]
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise bad
    return value


def load(environ: Mapping[str, str], overrides: Mapping[str, str] | None = None, *,
         log: Callable[[str], None] = lambda _: None) -> Config:
    """Build the config: flag > ``WARMSTART_<NAME>`` > ``<NAME>`` > default.

    ``overrides`` maps environment-variable names to raw flag values. An empty (or blank)
    variable or flag counts as unset, as shells, make and Kubernetes manifests often leave
    them. ``log`` hears what was read differently from how it was written (a gym game id).
    """
    known = {f.metadata["env"] for f in settings()}
    for name in environ:
        if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX):] not in known:
            wanted = name[len(ENV_PREFIX):]
            close = difflib.get_close_matches(wanted, sorted(known), n=1)
            hint = f" Did you mean {ENV_PREFIX}{close[0]}?" if close else ""
            raise ConfigError(f"{name} is not a setting of warmstart.{hint} "
                              f"Known settings: {', '.join(sorted(known))}.")
    values: dict[str, Any] = {}
    for f in settings():
        env = f.metadata["env"]
        given = ((overrides or {}).get(env), environ.get(ENV_PREFIX + env), environ.get(env))
        raw = next((value for value in given if value is not None and value.strip()), None)
        if raw is not None:
            values[f.name] = _parse_value(f, raw, log)
    given = frozenset(f.metadata["env"] for f in settings() if f.name in values)
    config = Config(**values, given=given)
    check_derived(config, SamplerShape(config.batch_t or EXAMPLE_1.batch_T,
                                       config.batch_b or EXAMPLE_1.batch_B))
    return config


def check_derived(config: Config, shape: SamplerShape) -> None:
    """Values computed from several settings, checked with them before anything is written:
    at load time in the shape the settings name, again once a warm start knows its lineage's."""
    updates = updates_per_iteration(config.replay_ratio, shape.steps_per_itr,
                                    config.batch_size)
    if updates > MAX_UPDATES_PER_ITERATION:
        raise ConfigError(
            f"REPLAY_RATIO={config.replay_ratio:g} with BATCH_SIZE={config.batch_size} makes "
            f"{updates} updates per {shape.steps_per_itr}-step iteration "
            f"({shape.batch_T} x {shape.batch_B}); at most {MAX_UPDATES_PER_ITERATION} are "
            "allowed (rlpyt's defaults make 1 or 2). Lower REPLAY_RATIO or raise BATCH_SIZE.")


def from_environment(overrides: Mapping[str, str] | None = None, *,
                     log: Callable[[str], None] = lambda _: None) -> Config:
    """The config for this process."""
    return load(os.environ, overrides, log=log)


def markdown_table() -> str:
    """The settings table of docs/settings.md (`make docs`); a test checks the page holds it."""
    rows = ["| Variable | Flag | Default | Allowed | What it does |", "|---|---|---|---|---|"]
    for f in settings():
        rows.append(f"| `{f.metadata['env']}` | `{flag_name(f)}` | `{default_text(f)}` | "
                    f"{allowed_text(f)} | {f.metadata['help']} |")
    return "\n".join(rows)


def without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` less every training setting (plain and ``WARMSTART_`` names).

    For starting a ``warmstart train`` process whose settings must be exactly the ones given
    (tests, the benchmark), whatever the caller's shell or ``make`` exported.
    """
    names = {f.metadata["env"] for f in settings()}
    return {k: v for k, v in environ.items() if k not in names and not k.startswith(ENV_PREFIX)}
