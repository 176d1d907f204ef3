"""The machine's limits for example 1, one component at a time.

Each measurement times one piece of the training loop alone (the emulator with rlpyt's
preprocessing, batch-1 action selection, one DQN update, a prioritized-replay draw) so the
engine's speed can be compared with what the hardware allows, not with a guess. The update
is example 1's (batch 32, rlpyt's model, Adam with eps 0.01/32), timed with plain targets (what
example 1 and so the engine runs use, hence the ceilings) and with double DQN (one more forward
pass of the online network). On the CPU the update's convolutions and matrix products are also
timed alone, with torch's profiler: the floor under any engine that does rlpyt's arithmetic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import psutil
import torch
from allocator import keep_freed_memory
from warmstart.config import EXAMPLE_1
from warmstart.engine.agents.model import AtariDqnModel
from warmstart.engine.algos.dqn import DqnLearner, make_optimizer
from warmstart.engine.replays.replay import PrioritizedReplay, UniformReplay
from warmstart.engine.samplers.atari import AtariEnv
from warmstart.games import minimal_action_count


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


BLOCKS = 5


def _rate(work: Callable[[], None], count: int, device: torch.device) -> float:
    """Calls of ``work`` per second: the fastest of ``BLOCKS`` blocks of ``count`` calls.

    A limit is what the part can do, so the best block counts: on a shared virtual machine
    the same update was seen to take anywhere from 26 to 38 ms from one minute to the next.
    A few untimed calls first let oneDNN build its kernels.
    """
    for _ in range(min(3, count)):
        work()
    best = 0.0
    for _ in range(BLOCKS):
        _sync(device)
        started = time.perf_counter()
        for _ in range(count):
            work()
        _sync(device)
        best = max(best, count / (time.perf_counter() - started))
    return best


def fill_replay(game: str, steps: int, replay: UniformReplay, seed: int = 0) -> float:
    """Play ``steps`` random env steps into ``replay``; returns the env's steps per second.

    The frames are real ones, so the update and replay timings see real data, and the env
    timing is the emulator plus rlpyt's preprocessing with nothing else in the loop.
    """
    env = AtariEnv(game, seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(env.n_actions, size=steps)
    observation = env.reset()
    started = time.perf_counter()
    for action in actions:
        step = env.step(int(action))
        replay.append(observation[-1], int(action), step.reward, step.done)
        observation = env.reset() if step.traj_done else step.observation
    return steps / (time.perf_counter() - started)


def act_rate(n_actions: int, device: torch.device, count: int) -> float:
    """Batch-1 greedy action selections per second: what the sampler asks each env step."""
    model = AtariDqnModel(n_actions).to(device).eval()
    observation = torch.zeros((4, 104, 80), dtype=torch.uint8)

    def act() -> None:
        with torch.no_grad():
            model(observation.to(device)).argmax(-1).item()

    return _rate(act, count, device)


def _learner(n_actions: int, device: torch.device, double_dqn: bool) -> DqnLearner:
    """Example 1's learner on a fresh model (the weights do not change the arithmetic)."""
    model = AtariDqnModel(n_actions).to(device)
    target = AtariDqnModel(n_actions).to(device)
    target.load_state_dict(model.state_dict())
    return DqnLearner(model, target, make_optimizer(model, 2.5e-4, 32), discount=0.99,
                      n_step_return=1, double_dqn=double_dqn, target_update_interval=312)


def update_rate(replay: UniformReplay, n_actions: int, device: torch.device, count: int, *,
                double_dqn: bool) -> float:
    """DQN updates per second on minibatches drawn from ``replay``, the draw included."""
    learner = _learner(n_actions, device, double_dqn)
    return _rate(lambda: learner.update(replay.sample(32)), count, device)


ARITHMETIC_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::mm",
                  "aten::addmm")


def update_arithmetic_seconds(replay: UniformReplay, n_actions: int, count: int) -> float:
    """CPU seconds per update spent in its convolutions and matrix products alone.

    The profiler's self time of those kernels, nothing else: the part of an update no engine
    doing rlpyt's arithmetic can avoid, whatever it does about Adam, copies or Python. So
    ``EXAMPLE_1.steps_per_itr / this`` bounds the env steps/s of any such engine on this machine, even
    one whose acting and optimizer step cost nothing.
    """
    learner = _learner(n_actions, torch.device("cpu"), double_dqn=False)
    learner.update(replay.sample(32))  # let oneDNN build its kernels outside the profile
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(count):
            learner.update(replay.sample(32))
    micros = sum(event.self_cpu_time_total for event in profile.key_averages()
                 if event.key in ARITHMETIC_OPS)
    return micros / 1e6 / count


def component_rates(threads: int, device_name: str, quick: bool) -> dict[str, float]:
    """Env, action-selection and update rates with ``threads`` torch threads.

    Meant for a fresh process per thread count (set once, before any torch work, as
    ``warmstart train`` sets it; malloc keeping freed memory, as a train process in effect
    does: see allocator.py), on a replay filled with real frames.
    """
    torch.set_num_threads(threads)
    keep_freed_memory()
    device = torch.device(device_name)
    n_actions = minimal_action_count("pong")
    replay = UniformReplay(20_000)
    rates = {"env_steps_per_s": fill_replay("pong", 2_000 if quick else 20_000, replay),
             "act_per_s": act_rate(n_actions, device, 20 if quick else 400)}
    for double_dqn in (False, True):
        key = "double_dqn_updates_per_s" if double_dqn else "updates_per_s"
        rates[key] = update_rate(replay, n_actions, device, 2 if quick else 12,
                                 double_dqn=double_dqn)
    if device.type == "cuda":
        rates["gpu_s_per_update"] = gpu_update_seconds(replay, n_actions, device, 50)
    else:
        rates["arithmetic_s_per_update"] = update_arithmetic_seconds(replay, n_actions,
                                                                     4 if quick else 12)
    return rates


def gpu_update_seconds(replay: UniformReplay, n_actions: int, device: torch.device,
                       count: int) -> float:
    """GPU time of one example-1 update (CUDA events): how long the GPU is busy per update."""
    learner = _learner(n_actions, device, double_dqn=False)
    batches = [replay.sample(32) for _ in range(count)]
    batches = [type(b)(*(t.clone() if isinstance(t, torch.Tensor) else t for t in b))
               for b in batches]  # sample() reuses its output array: keep each batch
    learner.update(batches[0])
    total = 0.0
    for batch in batches:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        learner.update(batch)
        end.record()
        torch.cuda.synchronize(device)
        total += start.elapsed_time(end) / 1e3
    return total / count


def prioritized_draws(game: str, fills: list[int], seed: int = 0) -> dict[str, float]:
    """Microseconds per batch-32 draw plus priority update, at each replay fill.

    A sum tree makes both O(log n): the time should grow by a small constant per tenfold
    fill, not tenfold. The replay is filled by cycling real frames (the emulator is not the
    subject here). Also returns the resident memory each stored transition costs.
    """
    env = AtariEnv(game, seed=seed)
    frames = [env.step(0).observation[-1].copy() for _ in range(64)]
    process = psutil.Process()
    rss_before, result = process.memory_info().rss, {}
    replay = PrioritizedReplay(max(fills), seed=seed)
    rng = np.random.default_rng(seed)
    for fill in sorted(fills):
        while replay.written < fill:
            i = replay.written
            replay.append(frames[i % len(frames)], i % 6, 0.0, i % 997 == 0)

        def draw() -> None:
            batch = replay.sample(32)
            replay.update_priorities(batch.idxs, rng.random(32, dtype=np.float32))

        result[f"us_per_draw_at_{fill}"] = 1e6 / _rate(draw, 300, torch.device("cpu"))
    result["rss_bytes_per_transition"] = (process.memory_info().rss - rss_before) / replay.written
    return result


def ceilings(env_sps: float, act: dict[int, float], upd: dict[int, float],
             updates_per_itr: int) -> dict[str, float]:
    """Env steps/s that the measured parts allow, for ``updates_per_itr`` updates per 4 steps.

    serial_k: one process doing everything with k torch threads. overlapped: acting on one
    core and learning on the other, 1 thread each, perfectly overlapped: the slower side sets
    the pace. best: the larger of these; an engine can beat "overlapped" only by giving the
    learner both cores, as serial_2 does.
    """
    act_side = {k: EXAMPLE_1.steps_per_itr * (1 / env_sps + 1 / act[k]) for k in act}
    learn_side = {k: updates_per_itr / upd[k] for k in upd}
    out = {f"serial_{k}": EXAMPLE_1.steps_per_itr / (act_side[k] + learn_side[k]) for k in act}
    out["overlapped"] = EXAMPLE_1.steps_per_itr / max(act_side[1], learn_side[1])
    out["best"] = max(out.values())
    return out
