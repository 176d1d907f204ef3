"""``warmstart train``: config -> start point -> engine -> snapshots, and the exit code.

This is the only place that knows the order of things: validate the config, check the volume,
find and check the start snapshot, build the engine, train, and record how the run ended.
A SIGTERM or SIGINT asks the engine to stop after the current iteration with a final snapshot;
a second one more than a second later exits at once, leaving the last complete snapshot as it
is (one within a second is the first delivered twice, as a group signal under make is). On a
volume that stops answering, the stop is bounded too (``checkpoint.volume_io``: exit 11).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING

from . import games, signals
from .checkpoint import volume
from .checkpoint.volume_io import VOLUME
from .config import Config
from .errors import EXIT_SIGINT, EXIT_SIGTERM, ConfigError

if TYPE_CHECKING:  # the engine package imports torch: only at run time, after config checks
    import torch

    from .checkpoint.start import StartPoint
    from .engine.runners.loop import StopRequest

EXIT_SIGNAL = {"SIGTERM": EXIT_SIGTERM, "SIGINT": EXIT_SIGINT}


def log(message: str) -> None:
    """Progress goes to stdout with a UTC timestamp, flushed so `kubectl logs -f` shows it."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} {message}", flush=True)


def choose_engine(config: Config) -> str:
    """auto = rlpyt where it is importable (as in the image), native otherwise."""
    available = importlib.util.find_spec("rlpyt") is not None
    if config.engine == "rlpyt" and not available:
        raise ConfigError("ENGINE=rlpyt but rlpyt is not importable here; use the image (built "
                          "with WITH_RLPYT=1, the default) or install docker/requirements-rlpyt.txt, "
                          "or use ENGINE=native / ENGINE=auto.")
    chosen = ("rlpyt" if available else "native") if config.engine == "auto" else config.engine
    if config.resume_state == "full" and chosen == "rlpyt":
        raise ConfigError(f"RESUME_STATE=full is supported by the native engine only, and "
                          f"ENGINE={config.engine} runs rlpyt here; set ENGINE=native, or "
                          "RESUME_STATE=off.")
    return chosen


def _set_threads(config: Config) -> int:
    """TORCH_THREADS, or every CPU the process may use (its affinity, capped by a container's
    CPU quota), for either engine: on 2 cores both train about 1.5x faster with 2 threads
    than with 1 (docs/performance.md)."""
    import torch

    from .engine.hardware.cpus import usable_cpus

    usable = usable_cpus()
    threads = config.torch_threads or usable
    if threads > usable:
        log(f"warning: TORCH_THREADS={threads} is more than the {usable} CPU(s) this process "
            "may use; the threads will take turns (slower). Unset it to use all of them.")
    torch.set_num_threads(threads)
    return threads


def _install_signal_handlers(stop: StopRequest) -> None:
    """First signal: stop after this iteration with a snapshot. Another within a second is the
    same request delivered twice (a group signal plus a parent forwarding it); one later than
    that is a deliberate second request: exit at once."""
    from .engine.runners.loop import DUPLICATE_WINDOW_S

    # A signal that came during the imports above was held until they were done: it stops the
    # command now, before anything is written, not the run these handlers are for.
    signals.raise_held()

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        kind = stop.receive(name)
        if kind == "again" and VOLUME.stalled():  # the snapshot cannot be written: exit 11
            VOLUME.abandon(f"a second {name}")
        if kind == "again":
            log(f"second {name}: exiting now; the last complete snapshot is kept")
            os._exit(EXIT_SIGNAL[stop.signal_name])
        if kind == "duplicate":
            log(f"{name} again within {DUPLICATE_WINDOW_S:g}s: the same stop request "
                "(delivered to the process group and forwarded); still stopping with a snapshot")
            return
        VOLUME.stopping(signum)
        log(f"{name} received: finishing the current iteration, then a final snapshot "
            f"(another signal more than {DUPLICATE_WINDOW_S:g}s from now exits at once)")

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run(config: Config) -> int:
    """Train as configured; returns the process exit code."""
    engine_name = choose_engine(config)
    n_actions = games.minimal_action_count(config.game)
    # Every volume call from here on runs on the volume worker: a stalled volume is said,
    # and a stop signal still ends the process (checkpoint.volume_io).
    VOLUME.configure(stall_warn=config.volume_stall_warn, log=log)
    # reads only, and imports no torch: a mistyped or full CKPT_DIR is said in a second
    VOLUME.call("check", config.ckpt_dir,
                lambda: volume.check(config.ckpt_dir, n_actions=n_actions, dueling=config.dueling))
    # Past this point files get written; a file-size limit must fail a write, not kill us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    from .checkpoint.start import Plan, prepare
    from .engine.hardware.device import resolve_device
    from .engine.runners import memory_plan
    from .engine.runners.loop import StopRequest

    # The last checks that need torch or the machine: still before anything is written.
    device = resolve_device(config)
    stop = StopRequest()
    _install_signal_handlers(stop)

    def check_memory(plan: Plan) -> None:  # once the run's span is known, before any write
        memory_plan.check(plan, engine=engine_name, device_type=device.type,
                          n_actions=n_actions, log=log)

    # one call on the volume worker: a stall anywhere in it is said and bounded like a write's
    start = VOLUME.call("start", config.ckpt_dir,
                        lambda: prepare(config, engine=engine_name, n_actions=n_actions, log=log,
                                        check=check_memory))
    if start is None:  # the run is at or past its target; prepare said which
        return 0
    config = start.config  # with the settings recorded beside the lineage's snapshot
    run_dir = start.run
    with run_dir.failing_records(log):  # a failure from here on is recorded in the manifest
        return _train(config, engine_name, start, device, stop)


def _train(config: Config, engine_name: str, start: StartPoint, device: torch.device,
           stop: StopRequest) -> int:
    """Build the engine, train, and record how the run ended; returns the exit code."""
    from .checkpoint.counters import counters
    from .engine.hardware.device import make_deterministic, reproducibility
    from .engine.runners.loop import train
    from .engine.runners.native import NativeEngine
    from .engine.runners.rlpyt_engine import RlpytEngine
    from .reporting.curve import FILE as CURVE
    from .reporting.curve import write_learning_curve

    run_dir, snapshot = start.run, start.snapshot
    budget = run_dir.budget
    if start.resumed:
        log(f"resuming run {run_dir.name} at itr {start.first_itr} "
            f"(target: {budget.target_steps:,} steps done)")
    if snapshot is None:
        log(f"cold start: no snapshot in {config.ckpt_dir}; training {config.game} from scratch")
    else:
        name = "itr" if snapshot.asynchronous is None else "sampler_itr"
        log(f"warm start from {snapshot.path} "
            f"({counters(snapshot.itr, snapshot.cum_steps, name=name)}, "
            f"{snapshot.shape.head} head, sha256 {snapshot.sha256[:12]})")
    if start.resume_state is None:
        log(f"learning rate {start.lr:g} (from {start.lr_source}); updates start after "
            f"{(start.min_itr_learn - start.first_itr) * budget.shape.steps_per_itr} fresh steps "
            "(the replay starts empty)")
    else:
        log(f"learning rate {start.lr:g} (from {start.lr_source}); updates start at itr "
            f"{start.min_itr_learn}, as in the interrupted process (the replay is restored)")
    threads = _set_threads(config)
    if config.deterministic:
        make_deterministic()
    engine_cls = RlpytEngine if engine_name == "rlpyt" else NativeEngine
    engine = engine_cls(config, start, device, log)
    log(f"run {run_dir.path}: engine {engine_name}, device {engine.device}, {threads} torch "
        f"threads, game {config.game}, itr {start.first_itr} -> {budget.target_itr} "
        f"(steps done {budget.steps_done(start.first_itr - 1):,} -> {budget.target_steps:,})")
    run_dir.record_start(reproducibility(engine.device, first_itr=start.first_itr,
                                         resume_state=start.resume_state))
    try:
        outcome = train(engine, config, start, stop, log)
    finally:
        engine.close()
    run_dir.mark(outcome)
    if config.learning_curve:  # after the run is recorded as ended: a by-product
        VOLUME.call("write", run_dir.path / CURVE, lambda: write_learning_curve(run_dir.path, log))
    if outcome == "stopped":
        assert stop.signal_name is not None
        log(f"stopped by {stop.signal_name} after a final snapshot in {run_dir.path}")
        return EXIT_SIGNAL[stop.signal_name]
    log(f"done: final snapshot {counters(budget.target_itr, budget.target_cum_steps)} "
        f"in {run_dir.path}")
    return 0

