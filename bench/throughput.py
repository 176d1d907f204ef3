"""``make bench``: training speed against the machine's limits and against rlpyt, in one go.

1. The limits: each part of example 1's loop timed alone (bench/limits.py) and the env
   steps/s they allow, serial and with acting and learning overlapped.
2. The native engine's real ``warmstart train`` on example 1 (bench/engine_runs.py).
3. The rlpyt engine the same way, at 1 and 2 torch threads, where rlpyt is importable.
4. Acting alone (bench/acting.py): env steps/s of B environments and one batched forward,
   for B = 1, 2, 4, ... up to the usable CPUs, in one process and with worker processes.
5. On CUDA, the CUDA path (bench/cuda_path.py): the captured update's GPU time, kernel
   launches and host syncs, and the native engine at rlpyt configs["dqn"]'s shape (2 x 16,
   batch 128, replay ratio 8) besides example 1's.

Prints a table and writes every number to a JSON file (``--out``), so runs can be compared.
It asserts nothing about time: a slow machine gives small numbers, not a failure. DEVICE
(cpu, cuda, auto) is read from the environment, as ``warmstart train`` reads it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import acting
import cuda_path
import engine_runs
import limits
import torch
from warmstart.checkpoint import atomic
from warmstart.config import EXAMPLE_1
from warmstart.engine.hardware.cpus import usable_cpus
from warmstart.engine.replays.replay import UniformReplay
from warmstart.provenance import versions

UPDATES_PER_ITR = 1  # example 1: max(1, round(8 * 4 / 32))


def _device() -> torch.device:
    wanted = os.environ.get("DEVICE", "auto")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


def _cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _machine(device: torch.device) -> dict[str, Any]:
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": _cpu_name(),
            "cores": usable_cpus(), "device": str(device),
            "versions": versions()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a new Python process.

    Each thread count gets a process of its own, set once as ``warmstart train`` sets it, and
    the replay's memory is measured where nothing freed earlier can be reused.
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def measure_limits(device: torch.device, quick: bool) -> dict[str, Any]:
    """Component rates at 1 and 2 torch threads, and the ceilings they imply."""
    rates = {threads: _in_fresh_process(limits.component_rates, threads, str(device), quick)
             for threads in (1, 2)}
    out: dict[str, Any] = {"env_steps_per_s": max(r["env_steps_per_s"] for r in rates.values())}
    for key in ("act_per_s", "updates_per_s", "double_dqn_updates_per_s"):
        out[key] = {threads: r[key] for threads, r in rates.items()}
    out["ceiling_env_steps_per_s"] = limits.ceilings(out["env_steps_per_s"], out["act_per_s"],
                                                     out["updates_per_s"], UPDATES_PER_ITR)
    if device.type == "cuda":
        out["gpu_s_per_update"] = rates[1]["gpu_s_per_update"]
        out["cuda_path"] = _in_fresh_process(cuda_path.measure, str(device), quick)
    else:
        out["arithmetic_s_per_update"] = {t: r["arithmetic_s_per_update"]
                                          for t, r in rates.items()}
        out["arithmetic_bound_env_steps_per_s"] = (
            EXAMPLE_1.steps_per_itr / UPDATES_PER_ITR / min(out["arithmetic_s_per_update"].values()))
    out["prioritized"] = _in_fresh_process(limits.prioritized_draws, "pong", [1_000, 10_000]
                                           if quick else [1_000, 10_000, 100_000])
    out["replay_bytes_per_transition"] = UniformReplay.bytes_per_transition()
    return out


FAST_SHAPE = {"BATCH_T": "2", "BATCH_B": "16", "BATCH_SIZE": "128"}  # rlpyt configs["dqn"]


def measure_engines(learn_steps: int, log_every: int, device: torch.device) -> dict[str, Any]:
    """The native engine at its default thread count, rlpyt at 1 and 2 threads if present;
    on CUDA also the native engine at the fast shape, for five times the steps."""
    runs = {"native": engine_runs.train_run("native", learn_steps, usable_cpus(),
                                            log_every)}
    if device.type == "cuda":
        # five times the steps and five times the log interval: as many snapshots (0.2-0.4 s
        # each) per window as example 1's run, not five times as many
        runs["native_2x16"] = engine_runs.train_run("native", 5 * learn_steps, usable_cpus(),
                                                    5 * log_every, shape=FAST_SHAPE)
    if importlib.util.find_spec("rlpyt") is not None:
        tries = [engine_runs.train_run("rlpyt", learn_steps, t, log_every) for t in (1, 2)]
        runs["rlpyt"] = max(tries, key=lambda r: r["env_steps_per_s"])
        runs["rlpyt_other_threads"] = min(tries, key=lambda r: r["env_steps_per_s"])
    return runs


def _cuda_path_lines(lim: dict[str, Any]) -> list[str]:
    """The captured update's rows; on the CPU, said to be unmeasured."""
    if "cuda_path" not in lim:
        return ["cuda path (captured update): not measured on CPU (DEVICE=cuda make bench)"]
    lines = ["cuda path (captured update, device replay)"]
    for size, r in lim["cuda_path"].items():
        how = "CUDA graph" if r["graphed"] else f"eager ({r['log']})"
        lines.append(f"  batch {size:>3}: GPU time {r['gpu_s_per_update'] * 1e3:.3f} ms, "
                     f"{r['kernels_per_update']:.0f} GPU kernels and copies, {r['host_syncs_per_update']:.1f} "
                     f"host syncs per update with its draw ({how})")
    return lines


def table(result: dict[str, Any]) -> str:
    """The short summary a person reads; the JSON holds the rest."""
    lim, runs = result["limits"], result["engines"]
    ceil = lim["ceiling_env_steps_per_s"]
    native = runs["native"]
    lines = [
        f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
        f"{result['machine']['device']}"
        + (f" ({result['machine']['gpu']})" if "gpu" in result["machine"] else "")
        + f", {result['machine']['date']}",
        "limits (each part alone)",
        f"  env steps/s (emulator, preprocessing, replay store){lim['env_steps_per_s']:8.0f}",
        (f"  action selections/s (batch 1), 1 | 2 threads  {lim['act_per_s'][1]:8.0f} | "
        f"{lim['act_per_s'][2]:.0f}"),
        (f"  updates/s (batch 32, Adam), 1 | 2 threads  {lim['updates_per_s'][1]:6.1f} | "
        f"{lim['updates_per_s'][2]:.1f}; double DQN {lim['double_dqn_updates_per_s'][1]:.1f} | "
        f"{lim['double_dqn_updates_per_s'][2]:.1f}"),
        (f"  ceiling env steps/s at replay ratio 8: serial 1 thread {ceil['serial_1']:.1f}, "
        f"serial 2 threads {ceil['serial_2']:.1f}, overlapped {ceil['overlapped']:.1f}"),
        "  prioritized draw+update (us) at fill "
        + ", ".join(f"{k.rsplit('_', 1)[1]}: {v:.0f}" for k, v in lim["prioritized"].items()
                    if k.startswith("us_")),
        (f"  replay memory per transition: {lim['replay_bytes_per_transition']} B reserved, "
        f"{lim['prioritized']['rss_bytes_per_transition']:.0f} B measured (prioritized)"),
    ]
    if "arithmetic_s_per_update" in lim:
        arith = lim["arithmetic_s_per_update"]
        lines.append(f"  update's convolutions and matrix products alone, 1 | 2 threads "
                     f"{arith[1] * 1e3:.1f} | {arith[2] * 1e3:.1f} ms: no engine doing this "
                     f"arithmetic passes {lim['arithmetic_bound_env_steps_per_s']:.1f} env steps/s")
    if "gpu_s_per_update" in lim:
        busy = native["updates_per_s"] * lim["gpu_s_per_update"]
        lines.append(f"  GPU time per update {lim['gpu_s_per_update'] * 1e3:.2f} ms: busy "
                     f"{busy:.0%} of the native run's time")
    lines += _cuda_path_lines(lim)
    lines += ["engines (warmstart train, example 1, timed after step 2000: learning, epsilon 0.01)",
              (f"  {'engine':8} {'threads':>7} {'steps/s':>8} {'upd/s':>6} {'peak RSS':>9} "
              f"{'snap write':>10} {'warm start':>10}  steps/s per window")]
    for name in ("native", "native_2x16", "rlpyt", "rlpyt_other_threads"):
        if name in runs:
            r = runs[name]
            label = "2x16,128" if name == "native_2x16" else r["engine"]
            lines.append(f"  {label:8} {r['torch_threads']:7d} {r['env_steps_per_s']:8.1f} "
                         f"{r['updates_per_s']:6.1f} {r['peak_rss_bytes'] / 2**20:6.0f} MB "
                         f"{r['snapshot_write_s_max']:9.2f}s {r['warm_start_process_s']:9.1f}s"
                         f"  {r['window_steps_per_s']}")
    lines.append("ratios")
    lines.append(f"  native / overlapped ceiling  {native['env_steps_per_s'] / ceil['overlapped']:.2f}")
    lines.append(f"  native / best ceiling        {native['env_steps_per_s'] / ceil['best']:.2f}")
    if "rlpyt" in runs:
        rlpyt = runs["rlpyt"]["env_steps_per_s"]
        lines.append(f"  native / rlpyt (best threads) {native['env_steps_per_s'] / rlpyt:.2f}")
        if "arithmetic_bound_env_steps_per_s" in lim:
            lines.append(f"  arithmetic bound / rlpyt     "
                         f"{lim['arithmetic_bound_env_steps_per_s'] / rlpyt:.2f}")
    else:
        lines.append("  native / rlpyt: rlpyt is not importable here (see docs/performance.md)")
    return "\n".join(lines + acting_table(result["acting"]))


def acting_table(act: dict[str, Any]) -> list[str]:
    """The acting-alone rows: serial and parallel env steps/s for each B."""
    lines = [(f"acting alone ({act['game']}, random actions, one batched forward per step, "
              f"{act['torch_threads']} torch thread)"),
             (f"  {'B':>3} {'serial steps/s':>14} {'parallel steps/s':>16} {'workers':>7} "
              f"{'parallel / serial B=1':>21}")]
    for row in act["rows"]:
        lines.append(f"  {row['B']:3d} {row['serial_env_steps_per_s']:14.0f} "
                     f"{row['parallel_env_steps_per_s']:16.0f} {row['workers']:7d} "
                     f"{row['parallel_over_serial_B1']:21.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learn-steps", type=int, default=4000,
                        help="env steps each engine run is timed for, after epsilon reached "
                        "0.01 at step 2000")
    parser.add_argument("--quick", action="store_true",
                        help="few repetitions and short runs: checks the benchmark works")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="folder for the JSON file (bench-<date>.json)")
    args = parser.parse_args()
    learn_steps = 400 if args.quick else args.learn_steps
    device = _device()
    result = {"machine": _machine(device),
              "settings": {"learn_steps": learn_steps, "quick": args.quick},
              "limits": measure_limits(device, args.quick),
              "engines": measure_engines(learn_steps, 500 if learn_steps % 500 == 0 else 100,
                                         device),
              "acting": _in_fresh_process(acting.acting_rates, str(device), args.quick)}
    print(table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    atomic.write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
