"""The ``warmstart`` command: ``train`` (the default) and ``inspect``.

User errors (bad config, bad snapshot, bad volume) are caught here, once, and printed as one
line with the exit code the README documents. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__, config
from .errors import UserError

COMMANDS = ("train", "inspect")

EXIT_CODES = """exit codes:
  0    done (or the run named by RUN_NAME had already finished)
  2    bad configuration (environment variable or flag)
  3    bad snapshot (missing, corrupt, unsafe, or for another game/head)
  4    checkpoint volume problem (missing, read-only, full)
  130  stopped by SIGINT after a final snapshot
  143  stopped by SIGTERM after a final snapshot"""


def _train_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "train", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="warm-start from the newest snapshot in CKPT_DIR and train (default command)",
        description="Warm-start DQN from the newest snapshot under CKPT_DIR (or cold-start if "
                    "there is none), train STEPS env steps and write rlpyt-format snapshots.\n"
                    "Every setting is an environment variable (also as WARMSTART_<NAME>) or the "
                    "flag shown; a flag wins over the environment.",
        epilog=EXIT_CODES)
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
                    "runs `train`; `warmstart train --help` lists every setting.",
        epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"warmstart {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,inspect}")
    _train_parser(sub)
    inspect = sub.add_parser(
        "inspect", help="summarise a snapshot (or the newest one under a folder)",
        description="Print a snapshot's itr, cum_steps, head, action count (and the games that "
                    "fit it), learning rate and parameter count. Exits 3 if the file is not a "
                    "usable snapshot.")
    inspect.add_argument("path", type=Path, help="a params.pkl / itr_N.pkl, or a folder")
    return parser


def _inspect(path: Path) -> int:
    from . import games
    from .checkpoint import discovery, snapshot
    from .errors import SnapshotError

    if path.is_dir():
        found = discovery.newest(discovery.candidates(path), strict=True, log=print)
        if found is None:
            raise SnapshotError(f"{path}: no params.pkl or itr_N.pkl under this folder.")
    else:
        found = snapshot.read(path)
    adam = found.optimizer["state"] if found.optimizer else {}
    steps = {int(float(s["step"])) for s in adam.values() if "step" in s}
    lines = {
        "path": found.path,
        "itr": found.itr,
        "cum_steps": found.cum_steps,
        "head": found.shape.head,
        "actions": found.shape.n_actions,
        "games with that many actions": ", ".join(games.game_for_action_count(
            found.shape.n_actions)[:12]) or "none known",
        "parameters": f"{found.parameter_count:,}",
        "learning rate": "none saved" if found.lr is None else f"{found.lr:g}",
        "optimizer updates": ", ".join(map(str, sorted(steps))) or "none saved",
        "sha256": found.sha256,
    }
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key:<{width}}  {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in COMMANDS
                         and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "train")
    args = build_parser().parse_args(args_list)
    try:
        if args.command == "inspect":
            return _inspect(args.path)
        from .train import run

        overrides = {f.metadata["env"]: getattr(args, f.metadata["env"])
                     for f in config.settings() if getattr(args, f.metadata["env"]) is not None}
        return run(config.from_environment(overrides))
    except UserError as err:
        print(f"warmstart: error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
