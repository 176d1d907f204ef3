"""Acting alone: env steps/s of a batch of ``B`` environments and one batched forward per step.

What a sampler iteration costs without learning: every environment steps (random actions, so
the games do not depend on an untrained network), and the model chooses the ``B`` actions in
one forward on the chosen device, its argmax brought back to the host as acting needs it.
Each ``B`` runs with the environments in this process (serial, as one worker) and with worker
processes (engine/samplers/workers.py, one per usable CPU at most), so the table shows what parallel
workers gain. Only the steps are timed, not the workers' start.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from warmstart.engine.agents.model import AtariDqnModel
from warmstart.engine.hardware.cpus import usable_cpus
from warmstart.engine.samplers.envs import SerialEnvs, env_seeds
from warmstart.engine.samplers.workers import ParallelEnvs, worker_count

GAME = "pong"
BLOCKS = 8


def batch_sizes(cpus: int) -> list[int]:
    """1, 2, 4, ... up to the usable CPUs (and the CPU count itself); at least 1 and 2."""
    sizes = [1]
    while sizes[-1] * 2 <= max(cpus, 2):
        sizes.append(sizes[-1] * 2)
    return sizes if sizes[-1] >= cpus else [*sizes, cpus]


def steps_per_s(envs: SerialEnvs | ParallelEnvs, model: AtariDqnModel, device: torch.device,
                iterations: int, blocks: int) -> float:
    """Env steps/s of ``envs`` with one forward of ``model`` per step: the best of ``blocks``
    blocks of ``iterations`` steps (a limit is what the machine can do; a shared machine's
    noise only slows blocks down)."""
    rng = np.random.default_rng(0)
    observations, best = envs.reset(), 0.0
    for block in range(blocks + 1):  # block 0 warms up oneDNN's and the device's kernels
        started = time.perf_counter()
        for _ in range(iterations):
            with torch.no_grad():
                model(torch.from_numpy(observations).to(device)).argmax(-1).cpu()
            observations = envs.step(rng.integers(envs.n_actions, size=len(envs))).observations
        if block:
            best = max(best, iterations * len(envs) / (time.perf_counter() - started))
    return best


def acting_rates(device_name: str, quick: bool) -> dict:
    """Serial and parallel env steps/s for every ``batch_sizes`` B, with 1 torch thread.

    One torch thread: the forward is a small part of an iteration, and idle torch threads
    that spin on the CPUs would take them from the workers. Meant for a fresh process.
    """
    torch.set_num_threads(1)
    device = torch.device(device_name)
    iterations, blocks = (20, 1) if quick else (100, BLOCKS)
    rows = []
    for batch in batch_sizes(usable_cpus()):
        seeds = env_seeds(0, batch)
        row = {"B": batch, "workers": worker_count(batch)}
        for mode in ("serial", "parallel"):
            envs = (SerialEnvs(GAME, seeds) if mode == "serial" else
                    ParallelEnvs(GAME, seeds, row["workers"]))
            try:
                model = AtariDqnModel(envs.n_actions).to(device).eval()
                row[f"{mode}_env_steps_per_s"] = steps_per_s(envs, model, device, iterations,
                                                             blocks)
            finally:
                envs.close()
        rows.append(row)
    base = rows[0]["serial_env_steps_per_s"]
    for row in rows:
        row["parallel_over_serial_B1"] = row["parallel_env_steps_per_s"] / base
    return {"game": GAME, "torch_threads": 1, "steps_per_block": iterations, "rows": rows}
