"""``warmstart eval``: play a snapshot's game and print the score, optionally with a video.

The snapshot is read as training reads it (safely, the newest usable one when given a folder)
and checked against the game before anything is played. The game is ``--game``, else the one
recorded beside the snapshot (our ``manifest.json`` or rlpyt's ``params.json``), else ``GAME``.
Games are played as rlpyt's evaluation plays them (see ``engine.play``) with the seed stream of
``(SEED, the snapshot's itr)``: the same games the training run's own evaluation at that
iteration played, so with ``EVAL_EPISODES`` games the score matches its ``Eval/`` row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import games
from .checkpoint import discovery
from .checkpoint import snapshot as snap
from .checkpoint.counters import counters
from .checkpoint.records import recorded_game
from .config import Config
from .errors import SnapshotError

if TYPE_CHECKING:  # the engine imports torch: only once the command runs
    from .engine.playing.video import VideoWriter


def run(path: Path, config: Config, *, game: str | None, epsilon: float, max_steps: int,
        video_path: Path | None, log: Callable[[str], None] = print) -> int:
    """Play ``config.eval_episodes`` games with the snapshot at ``path``; returns the exit code."""
    from .engine.playing.video import VideoWriter

    video = VideoWriter(video_path, log) if video_path is not None else None
    try:
        return _play(path, config, game=game, epsilon=epsilon, max_steps=max_steps, video=video,
                     log=log)
    except BaseException:  # a stop signal included: no temp video is left behind
        if video is not None:
            video.discard()
        raise


def _play(path: Path, config: Config, *, game: str | None, epsilon: float, max_steps: int,
          video: VideoWriter | None, log: Callable[[str], None]) -> int:
    """Load, check and play; then write the video."""
    from .engine.hardware.device import resolve_device
    from .engine.playing.play import play, q_network
    from .engine.playing.video import FPS, GIF_FRAME_MS

    snapshot = discovery.snapshot_at(path, strict=config.strict_snapshots, log=log)
    game = game or recorded_game(snapshot.path) or config.game
    try:
        n_actions = games.minimal_action_count(game)
    except ValueError as err:
        raise SnapshotError(f"{snapshot.path}: recorded game {game!r} is not playable here "
                            f"({err}); pass --game.") from None
    snap.check_fits(snapshot, game=game, n_actions=n_actions, dueling=snapshot.shape.dueling)
    device = resolve_device(config)
    try:
        model = q_network(snapshot.model, device)
    except (ValueError, RuntimeError) as err:  # inner shapes that are not AtariDqnModel's
        raise SnapshotError(f"{snapshot.path}: weights do not fit the model "
                            f"({str(err).splitlines()[-1].strip()}).") from None
    episodes = config.eval_episodes
    name = "itr" if snapshot.asynchronous is None else "sampler_itr"  # AsyncRl's progress
    log(f"snapshot  {snapshot.path} ({counters(snapshot.itr, snapshot.cum_steps, name=name)}, "
        f"sha256 {snapshot.sha256[:12]})")
    log(f"playing   {episodes} game(s) of {game} at epsilon {epsilon:g} on {device}, seed "
        f"{config.seed}; a game ends at game over or after {max_steps:,} steps")

    def report(index: int, trajectory: dict[str, float], cut: bool) -> None:
        note = " (cut at the step limit)" if cut else ""
        log(f"game {index + 1}/{episodes}  score {trajectory['GameScore']:g}  length "
            f"{int(trajectory['Length'])} steps{note}")

    started = time.monotonic()
    result = play(model, game, episodes=episodes, seed=config.seed, itr=snapshot.itr,
                  epsilon=epsilon, discount=config.discount, max_steps=max_steps, video=video,
                  on_episode=report)
    log(f"score     {result.summary('GameScore')}")
    log(f"length    {result.summary('Length')}")
    log(f"time      {time.monotonic() - started:.1f} s ({result.steps / result.seconds:.0f} "
        "steps/s)")
    if video is not None:
        written = video.close()
        height, width = video.shape[:2]
        rate = f"{GIF_FRAME_MS} ms a frame" if video.gif else f"{FPS} fps"
        log(f"video     {written}: game 1, {video.frames} frames of {height}x{width} RGB, "
            f"{rate}")
    return 0
