"""The ``warmstart`` command: ``train`` (the default), ``inspect``, ``eval``, ``lineage`` and
``report``.

User errors (bad config, bad snapshot, bad volume) are caught here, once, and printed as one
line with the exit code docs/exit-codes.md documents. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__, config, errors, runtime_dirs, sweep
from .checkpoint import volume_errors
from .config import EVAL_EPSILON, MAX_EPISODE_STEPS
from .console import guarded_output
from .errors import UserError
from .signals import Interrupted, raising_on_stop, say_stopped

COMMANDS = ("train", "inspect", "eval", "lineage", "report")
ABANDONED_AFTER_MINUTES = 60.0
"""``report``: a run whose manifest says running but is older than this has no live trainer.
Trainers rewrite it at every snapshot, so this must exceed the time between two snapshots."""

_SIGNALS = {errors.EXIT_SIGINT: "stopped by SIGINT (Ctrl-C)",
            errors.EXIT_SIGTERM: "stopped by SIGTERM"}
_READ_MISSING = "the path (or CKPT_DIR) does not exist"
COMMAND_EXIT_CODES: dict[str, dict[int, str]] = {
    "train": errors.EXIT_CODES,
    "inspect": {0: "summarised",
                2: "bad arguments",
                3: "the path does not exist, or holds no usable snapshot"} | _SIGNALS,
    "eval": {0: "played",
             2: "bad flag or setting (--video: a name not .mp4/.gif, or no such folder)",
             3: f"{_READ_MISSING}, or the snapshot is not usable or not for the game",
             4: "the video could not be written (full or read-only folder)",
             6: "a GPU is present but torch cannot use it (or set DEVICE=cpu)"} | _SIGNALS,
    "lineage": {0: "printed",
                2: "bad flag or setting (--curve: no matplotlib, or no such folder)",
                3: f"{_READ_MISSING}, or holds no run or snapshot",
                4: "the curve could not be written (full or read-only folder)"} | _SIGNALS,
    "report": {0: "printed (also when the volume holds no runs)",
               2: "bad flag or setting (--plot: no matplotlib, or no such folder)",
               3: f"{_READ_MISSING}",
               4: "the plot could not be written (full or read-only folder)"} | _SIGNALS,
}
"""Each command's own exit codes for its --help: the reading commands never meet training's
5 or 8. Every code is one of errors.EXIT_CODES (a test checks it)."""


class _Formatter(argparse.HelpFormatter):
    """Text with line breaks (the exit-code tables) is kept as written; a one-line
    description is wrapped to the terminal, as argparse's default does."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def exit_codes_text(command: str) -> str:
    """The ``exit codes:`` epilog of ``command``'s --help."""
    return "exit codes:\n" + "\n".join(f"  {code:<4} {meaning}"
                                        for code, meaning in COMMAND_EXIT_CODES[command].items())


def _train_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "train", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="warm-start from the newest snapshot in CKPT_DIR and train (default command)",
        description="Warm-start DQN from the newest snapshot under CKPT_DIR (or cold-start if "
                    "there is none), train STEPS env steps and write rlpyt-format snapshots.\n"
                    "Every setting is an environment variable (also as WARMSTART_<NAME>) or the "
                    "flag shown; a flag wins over the environment; an empty variable or "
                    "flag means unset (the default applies).\n"
                    "SIGTERM or SIGINT: stop after the current iteration with a final snapshot; "
                    "a second signal more than 1 s after the first exits at once (one within "
                    "1 s is the same request delivered twice, as a group signal under make "
                    "is). A volume call still stalled VOLUME_STALL_WARN seconds after the "
                    "signal ends it with exit 11, without a final snapshot.",
        epilog=exit_codes_text("train"))
    for f in config.settings():
        env = f.metadata["env"]
        parser.add_argument(
            config.flag_name(f), dest=env, metavar=env,
            help=f"{f.metadata['help']} [{config.allowed_text(f)}; "
                 f"default {config.default_text(f)}]")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmstart", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Warm-started DQN on Atari, in rlpyt's snapshot format. Without a command, "
                    "runs `train`; `warmstart train --help` lists every setting, and each "
                    "command's --help its own exit codes.",
        epilog="train's " + exit_codes_text("train"))
    parser.add_argument("--version", action="version", version=f"warmstart {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,inspect,eval,lineage,report}")
    _train_parser(sub)
    inspect = sub.add_parser(
        "inspect", help="summarise a snapshot (or the newest one under a folder)",
        formatter_class=_Formatter, epilog=exit_codes_text("inspect"),
        description="Print a snapshot's itr, cum_steps, steps done, head, action count (and "
                    "the games that fit it), learning rate and parameter count. Exits 3 if the "
                    "file is not a usable snapshot.")
    inspect.add_argument("path", type=Path, help="a params.pkl / itr_N.pkl, or a folder")
    _eval_parser(sub)
    lineage = sub.add_parser(
        "lineage", help="the chain of runs a snapshot descends from, as a table",
        formatter_class=_Formatter, epilog=exit_codes_text("lineage"),
        description="Follow the parent links in the runs' manifest.json files from a run back "
                    "to its cold start (or to an rlpyt run) and print one row per run: parent "
                    "snapshot, span in env steps done, last training and evaluation score, "
                    "status. Exits 3 if there is no run or snapshot to start from.")
    lineage.add_argument("path", type=Path, nargs="?",
                         help="a run folder, a snapshot, or a volume (the run of its newest "
                              "snapshot) [default: CKPT_DIR]")
    lineage.add_argument("--curve", type=Path, metavar="PNG",
                         help="also draw the lineage's learning curve into this PNG file")
    _report_parser(sub)
    return parser


def _report_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report", help="one row per run on the volume: game, seed, steps, scores, status",
        formatter_class=_Formatter, epilog=exit_codes_text("report"),
        description="List every run folder under the volume, sorted by game, seed and name: "
                    "game, seed, run name, steps done at the newest snapshot / the run's "
                    "target, latest training and evaluation score, and status: running, "
                    "finished, stopped by a signal, abandoned (the manifest says running "
                    "but was not written for --abandoned-after minutes: the trainer was "
                    "killed and nothing resumed it), or failed (a start ended on an error; "
                    "the error's line is printed under the table). A damaged file gets one "
                    "line on stderr and its run a row with what could be read. Exits 3 if the "
                    "folder is missing, as inspect and lineage do.")
    parser.add_argument("path", type=Path, nargs="?",
                        help="the checkpoint volume [default: CKPT_DIR]")
    parser.add_argument("--plot", type=Path, metavar="PNG",
                        help="also draw every run's score curve, one panel per game")
    parser.add_argument("--abandoned-after", type=_number(float, 0), metavar="MINUTES",
                        default=ABANDONED_AFTER_MINUTES,
                        help="a running run whose manifest is older is abandoned "
                             f"[default: {ABANDONED_AFTER_MINUTES:g}]")


def _number(kind: type, minimum: float, maximum: float = math.inf) -> Callable[[str], float]:
    """An argparse type: a finite ``kind`` from ``minimum`` to ``maximum`` (argparse names the
    flag)."""
    def parse(text: str) -> float:
        value = kind(text)
        if not math.isfinite(value) or not minimum <= value <= maximum:
            bounds = f">= {minimum:g}" if maximum == math.inf else (
                f"from {minimum:g} to {maximum:g}")
            raise argparse.ArgumentTypeError(f"must be a finite number {bounds}, not {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="play games with a snapshot and print the score (optionally record a video)",
        description="Play whole games with a snapshot as rlpyt's evaluation does (epsilon "
                    "0.001;\na game ends at game over, not at a lost life) and print the mean, "
                    "median, min\nand max score and length. The game is --game, else the one "
                    "recorded beside the\nsnapshot, else GAME. Settings not given as flags "
                    "come from the environment\nas for train (CKPT_DIR, SEED, DEVICE, "
                    "EVAL_EPISODES, DISCOUNT, STRICT_SNAPSHOTS).\nExits 3 if the snapshot is "
                    "not usable or does not fit the game.",
        epilog=exit_codes_text("eval"))
    parser.add_argument("path", type=Path, nargs="?",
                        help="a params.pkl / itr_N.pkl, or a folder (its newest snapshot) "
                             "[default: CKPT_DIR]")
    parser.add_argument("--episodes", type=_number(int, 1, 100_000), metavar="N",
                        help="games to play [default: EVAL_EPISODES, 10]")
    parser.add_argument("--epsilon", type=_number(float, 0, 1), default=EVAL_EPSILON,
                        help="chance of a random action, from 0 to 1 [default: "
                             f"{EVAL_EPSILON:g}, rlpyt's]")
    parser.add_argument("--max-steps", type=_number(int, 1, 10**9), default=MAX_EPISODE_STEPS,
                        metavar="N", help="cut a game after N agent steps [default: "
                                          f"{MAX_EPISODE_STEPS}, rlpyt's horizon: 30 minutes]")
    parser.add_argument("--video", type=Path, metavar="FILE",
                        help="record the first game, raw 210x160 screen at 15 fps, into a "
                             "FILE named .mp4 (H.264) or .gif; any other name is refused "
                             "(exit 2); without imageio-ffmpeg a .mp4 name gets a .gif beside "
                             "it")
    parser.add_argument("--game", help="the game [default: as recorded, else GAME]")
    parser.add_argument("--seed", help="seed of the games [default: SEED, 0]")
    parser.add_argument("--device", help="cpu, cuda or auto [default: DEVICE, auto]")


def _volume(settings: config.Config) -> Path:
    """CKPT_DIR, for a reading command given no path: a folder, or exit 3 as for a missing
    path (training's exit 4 is for a volume it cannot write)."""
    from .checkpoint.volume import folder

    try:
        return folder(settings.ckpt_dir)
    except errors.VolumeError as err:
        raise errors.SnapshotError(str(err)) from None


def _lineage(path: Path | None, curve: Path | None) -> int:
    from .reporting import lineage

    chain = lineage.lineage(lineage.run_of(path or _volume(config.from_environment())))
    print(lineage.table(chain))
    if curve is not None:
        from .reporting.curve import draw

        draw(chain, curve)
        print(f"learning curve: {curve}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .reporting.report import report

    return report(args.path or _volume(config.from_environment()), args.plot,
                  args.abandoned_after * 60, out=print,
                  err=lambda line: print(line, file=sys.stderr))


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import run

    flags = {"GAME": args.game, "SEED": args.seed, "DEVICE": args.device,
             "EVAL_EPISODES": None if args.episodes is None else str(args.episodes)}
    settings = config.from_environment({k: v for k, v in flags.items() if v is not None},
                                       log=print)
    return run(args.path or _volume(settings), settings, game=args.game and settings.game,
               epsilon=args.epsilon, max_steps=args.max_steps, video_path=args.video)


def _async_lines(found: Any) -> dict[str, Any]:
    """inspect's lines for an AsyncRl snapshot, whose ``itr`` counts optimizer iterations
    and whose progress is its ``sampler_itr`` (steps done count from it)."""
    if found.asynchronous is None:
        return {}
    counted = found.asynchronous
    return {"itr": f"{counted.opt_itr} (optimizer iterations: an asynchronous rlpyt run, AsyncRl)",
            "sampler_itr": counted.sampler_itr, "cum_updates": counted.cum_updates}


def _inspect(path: Path) -> int:
    from . import games
    from .checkpoint import discovery, lease
    from .checkpoint.counters import steps_done

    found = discovery.snapshot_at(path, strict=True, log=print)
    adam = found.optimizer["state"] if found.optimizer else {}
    steps = {int(float(s["step"])) for s in adam.values() if "step" in s}
    lines = {
        "path": found.path,
        "itr": found.itr,
        **_async_lines(found),
        "cum_steps": found.cum_steps,
        "steps done": f"{steps_done(found.itr, found.cum_steps):,} (rlpyt's cum_steps counts "
                      "the steps before the last iteration)",
        "head": found.shape.head,
        "actions": found.shape.n_actions,
        "games with that many actions": ", ".join(games.game_for_action_count(
            found.shape.n_actions)[:12]) or "none known",
        "parameters": f"{found.parameter_count:,}",
        "learning rate": "none saved" if found.lr is None else f"{found.lr:g}",
        "optimizer updates": ", ".join(map(str, sorted(steps))) or "none saved",
        "sha256": found.sha256,
    }
    if (found.path.parent / lease.FILE).exists():  # a run's writer, read, never taken or renewed
        lines["writer"] = lease.shown(found.path.parent)
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key:<{width}}  {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Output goes through guarded streams (``console``): a reader that went away (`| head`, a
    killed `tee`) or a full disk under a redirected log never turns into an exit or a lost
    snapshot. SIGINT or SIGTERM at any moment ends any command with one line and 130/143
    (``signals``); training installs its own handlers once it can stop with a snapshot.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with raising_on_stop():
            if not {"-h", "--help", "--version"} & set(args):  # those never touch the volume
                runtime_dirs.prepare()  # before matplotlib or torch is imported
            with guarded_output():
                return _run(args)
    except Interrupted as stop:  # training's own handlers stop it with a snapshot instead
        return say_stopped(stop)


def _run(args_list: list[str]) -> int:
    if not args_list or (args_list[0] not in COMMANDS
                         and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "train")
    args = build_parser().parse_args(args_list)
    try:
        if args.command == "inspect":
            return _inspect(args.path)
        if args.command == "eval":
            return _eval(args)
        if args.command == "lineage":
            return _lineage(args.path, args.curve)
        if args.command == "report":
            return _report(args)
        from .train import log, run

        if (sweep_line := sweep.apply(os.environ)) is not None:
            log(sweep_line)
        overrides = {f.metadata["env"]: getattr(args, f.metadata["env"])
                     for f in config.settings() if getattr(args, f.metadata["env"]) is not None}
        return run(config.from_environment(overrides, log=log))
    except OSError as err:  # not one a reader or writer turned into its own line
        outage = volume_errors.outage(Path(err.filename or "the checkpoint volume"), err,
                                      "reading or writing")
        if outage is None:
            raise  # a bug: its traceback is the report
        print(f"warmstart: error: {outage}", file=sys.stderr, flush=True)
        return outage.exit_code
    except UserError as err:
        print(f"warmstart: error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
