"""Preemption-proof jobs: real trainer processes, real signals, real files.

Each test starts `warmstart train` as a subprocess the way a container runtime does, stops or
kills it, and checks what a user would check on the volume afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import FILES_ONLY_RUN, REPO, SHORT_RUN, clean_env, warmstart
from warmstart.checkpoint.atomic import TEMP_MARKER
from warmstart.engine.runners.loop import DUPLICATE_WINDOW_S

# Many log points, so snapshot writes are frequent targets for a kill.
BUSY = SHORT_RUN | {"LOG_EVERY": "40", "SNAPSHOT_MODE": "last+gap", "SNAPSHOT_EVERY": "80",
                    "KEEP_SNAPSHOTS": "2"}


def _start(ckpt: Path, **settings: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "warmstart", "train"],
                            env=clean_env(CKPT_DIR=str(ckpt), **settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _manifest(run: Path) -> dict:
    try:
        return json.loads((run / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wait_for_snapshot(run: Path, proc: subprocess.Popen, timeout: float = 120,
                       past_cum_steps: int = -1) -> dict:
    """Wait until the run's manifest lists a snapshot beyond ``past_cum_steps``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = _manifest(run).get("snapshots")
        if entries and entries[-1]["cum_steps"] > past_cum_steps:
            return entries[-1]
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.05)
    raise AssertionError("no periodic snapshot appeared")


def _loadable(run: Path) -> list[tuple[str, int]]:
    """Every visible snapshot in the folder loads; returns (name, cum_steps) for each."""
    found = []
    for path in sorted(run.glob("*.pkl")):
        params = torch.load(path, weights_only=True)
        found.append((path.name, params["cum_steps"]))
    return found


def test_sigterm_writes_final_snapshot_and_exits_143(tmp_path: Path) -> None:
    run = tmp_path / "job"
    proc = _start(tmp_path, **(SHORT_RUN | {"STEPS": "100000", "RUN_NAME": "job",
                                            "LOG_EVERY": "400", "LEARNING_CURVE": "1"}))
    periodic = _wait_for_snapshot(run, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, output
    final = torch.load(run / "params.pkl", weights_only=True)
    assert final["cum_steps"] > periodic["cum_steps"]
    assert _manifest(run)["status"] == "stopped"
    assert "SIGTERM received" in output and not list(run.glob(f".*{TEMP_MARKER}*"))
    assert (run / "learning_curve.png").is_file()  # drawn on the way out, too


def _sigterm_during_evaluation(ckpt: Path, settings: dict[str, str]) -> tuple[str, str]:
    """Start the job, SIGTERM it once an evaluation has begun; returns the line that said so
    and the whole output. The job must stop at once, not after the games (the caller checks
    that the evaluation was dropped; how long a stop takes is measured by the preemption drill,
    never asserted)."""
    proc = _start(ckpt, **settings)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "evaluating" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output = "".join(seen) + proc.communicate(timeout=60)[0]
    assert proc.returncode == 143, output
    return seen[-1], output


def test_sigterm_during_an_evaluation_drops_it_and_a_restart_plays_it(tmp_path: Path) -> None:
    """100 pong games would take minutes: the stop must not wait for them."""
    run = tmp_path / "job"
    settings = SHORT_RUN | {"STEPS": "100000", "RUN_NAME": "job", "LOG_EVERY": "200",
                            "EVAL_EVERY": "400", "EVAL_EPISODES": "100"}
    began, output = _sigterm_during_evaluation(tmp_path, settings)
    assert "evaluating 100 game(s) at 400 steps" in began
    assert "evaluation dropped" in output and "eval at " not in output
    final = torch.load(run / "params.pkl", weights_only=True)
    assert final["cum_steps"] == 396  # the log point whose evaluation was dropped
    assert _manifest(run)["status"] == "stopped"
    # the restart plays the dropped evaluation at its first log point, not at the next multiple
    began, _ = _sigterm_during_evaluation(tmp_path, settings)
    assert "evaluating 100 game(s) at 600 steps" in began


def test_two_signals_50_ms_apart_are_one_stop_request(tmp_path: Path) -> None:
    """A group signal plus a forwarding parent: the second is the first delivered twice."""
    run = tmp_path / "job"
    proc = _start(tmp_path, **(SHORT_RUN | {"STEPS": "100000", "RUN_NAME": "job",
                                            "LOG_EVERY": "400"}))
    periodic = _wait_for_snapshot(run, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "the same stop request" in output and "exiting now" not in output
    assert "stopped by SIGINT after a final snapshot" in output
    assert torch.load(run / "params.pkl", weights_only=True)["cum_steps"] > periodic["cum_steps"]
    assert _manifest(run)["status"] == "stopped"


def test_a_second_signal_after_the_window_exits_at_once() -> None:
    """The trainer's own handlers, in a process whose iteration never ends: only a deliberate
    second signal gets it out, with the first signal's exit code."""
    harness = ("import time\n"
               "from warmstart.engine.runners.loop import StopRequest\n"
               "from warmstart.train import _install_signal_handlers\n"
               "_install_signal_handlers(StopRequest())\n"
               "print('ready', flush=True)\n"
               "while True:\n"
               "    time.sleep(0.01)\n")
    proc = subprocess.Popen([sys.executable, "-c", harness], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert "SIGTERM received" in proc.stdout.readline()
    time.sleep(DUPLICATE_WINDOW_S + 0.5)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, output
    assert "second SIGINT: exiting now" in output


@pytest.mark.drill
def test_group_sigterm_under_make_always_ends_with_the_final_snapshot(tmp_path: Path) -> None:
    """`make train`, then a SIGTERM to its whole process group (systemd, Slurm, kill -- -PGID):
    the trainer gets it from the group and again from make. Repeated to catch the moment
    between the two deliveries; every time, a final snapshot and exit 143."""
    make = shutil.which("make")
    venv = Path(sys.prefix)
    if make is None or not (venv / "bin" / "warmstart").exists():
        pytest.skip("needs make and the warmstart command in this interpreter's venv")
    for trial in range(8):
        ckpt = tmp_path / f"trial{trial}"
        ckpt.mkdir()
        # -o: never rebuild the venv here, whatever its stamp's age
        proc = subprocess.Popen(
            [make, "--no-print-directory", "-o", f"{venv}/.installed", "train", f"VENV={venv}"],
            cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=clean_env(CKPT_DIR=str(ckpt), RUN_NAME="job",
                                     **(SHORT_RUN | {"STEPS": "100000"})))
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "cold start" in line:  # the trainer's first line: its handlers are in place
                break
        os.killpg(proc.pid, signal.SIGTERM)
        output = "".join(seen) + proc.communicate(timeout=120)[0]
        assert "stopped by SIGTERM after a final snapshot" in output, f"trial {trial}\n{output}"
        assert _manifest(ckpt / "job")["status"] == "stopped"
        assert _loadable(ckpt / "job")


def test_killed_job_resumes_to_the_same_target_and_then_does_nothing(tmp_path: Path) -> None:
    # no updates (MIN_STEPS_LEARN beyond the run): this is about the budget, not learning
    settings = SHORT_RUN | {"STEPS": "2000", "RUN_NAME": "job", "LOG_EVERY": "200",
                            "MIN_STEPS_LEARN": "100000"}
    run = tmp_path / "job"
    proc = _start(tmp_path, **settings)
    _wait_for_snapshot(run, proc)
    proc.kill()
    proc.wait()
    interrupted = torch.load(run / "params.pkl", weights_only=True)["cum_steps"]
    assert interrupted < 1996

    resumed = warmstart(CKPT_DIR=str(tmp_path), **settings)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run job" in resumed.stdout
    final = torch.load(run / "params.pkl", weights_only=True)
    assert (final["itr"], final["cum_steps"]) == (499, 1996)  # the target, not 2000 more
    assert _manifest(run)["status"] == "finished"

    again = warmstart(CKPT_DIR=str(tmp_path), **settings)
    assert again.returncode == 0 and "already reached its target" in again.stdout
    assert torch.load(run / "params.pkl", weights_only=True)["cum_steps"] == 1996


def test_restart_without_run_name_resumes_an_unfinished_run_with_the_same_config(
        tmp_path: Path) -> None:
    settings = SHORT_RUN | {"STEPS": "2000", "LOG_EVERY": "200", "MIN_STEPS_LEARN": "100000"}
    proc = _start(tmp_path, **settings)
    _wait_for_snapshot(tmp_path / "run_0", proc)
    proc.kill()
    proc.wait()
    resumed = warmstart(CKPT_DIR=str(tmp_path), **settings)
    assert "run run_0 stopped before its target" in resumed.stdout, resumed.stdout
    assert torch.load(tmp_path / "run_0" / "params.pkl", weights_only=True)["cum_steps"] == 1996
    assert not (tmp_path / "run_1").exists()
    # finished: the next start (as `make train` twice) is a new run, warm-started
    again = warmstart(CKPT_DIR=str(tmp_path), **settings)
    assert "warm start from" in again.stdout
    assert torch.load(tmp_path / "run_1" / "params.pkl", weights_only=True)["cum_steps"] == 3996


@pytest.mark.drill
def test_random_sigkills_always_leave_a_loadable_snapshot(tmp_path: Path) -> None:
    seed = int(os.environ.get("FAULT_SEED", "20261124"))
    rng = random.Random(seed)
    settings = BUSY | {"STEPS": "200000", "RUN_NAME": "job", "MIN_STEPS_LEARN": "100000"}
    run = tmp_path / "job"
    best, killed_mid_write = 0, 0
    for trial in range(20):
        proc = _start(tmp_path, **settings)
        if trial == 0:
            _wait_for_snapshot(run, proc)
        if trial % 4 == 3:  # aim at a write: kill as soon as a temp file shows up
            deadline = time.monotonic() + 60
            while not any(TEMP_MARKER in p.name for p in run.iterdir()):
                assert time.monotonic() < deadline and proc.poll() is None, "no write seen"
                time.sleep(0.001)
        else:
            time.sleep(rng.uniform(2.0, 5.0))  # past start-up: into stepping and writes
        proc.kill()
        output, _ = proc.communicate()
        snapshots = _loadable(run)
        assert snapshots, f"trial {trial} (FAULT_SEED={seed}): no snapshot\n{output}"
        newest = max(c for _, c in snapshots)
        assert newest >= best, f"trial {trial} (FAULT_SEED={seed}): progress went backwards"
        best = newest
        stray = [p.name for p in run.iterdir() if TEMP_MARKER in p.name]
        assert all(name.startswith(".") for name in stray)  # never named like data
        killed_mid_write += bool(stray)
    assert killed_mid_write >= 1, "no kill landed during a snapshot write"
    proc = _start(tmp_path, **settings)  # a restart sweeps what the kills left
    _wait_for_snapshot(run, proc, past_cum_steps=best)
    leftovers = [p.name for p in run.iterdir()
                 if TEMP_MARKER in p.name and f"{TEMP_MARKER}{proc.pid}-" not in p.name]
    proc.kill()
    proc.wait()
    assert leftovers == []


@contextlib.contextmanager
def _mount(*args: str) -> Iterator[None]:
    """A real mount (CI runs as root); skips where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    target = args[-1]
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", target], check=False)


def test_read_only_ckpt_dir_exits_4_untouched(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    first = warmstart(CKPT_DIR=str(ckpt), **FILES_ONLY_RUN)
    assert first.returncode == 0, first.stderr
    before = hashlib.sha256((ckpt / "run_0" / "params.pkl").read_bytes()).hexdigest()
    with _mount("--bind", "-o", "ro", str(ckpt), str(ckpt)):
        result = warmstart(CKPT_DIR=str(ckpt), **FILES_ONLY_RUN)
        assert result.returncode == 4, result.stderr
        assert "must be writable by uid 0" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    after = hashlib.sha256((ckpt / "run_0" / "params.pkl").read_bytes()).hexdigest()
    assert after == before and sorted(p.name for p in ckpt.iterdir()) == ["run_0"]


def test_volume_without_room_for_two_snapshots_exits_4(tmp_path: Path) -> None:
    ckpt = tmp_path / "small"
    ckpt.mkdir()
    with _mount("-t", "tmpfs", "-o", "size=60m", "tmpfs", str(ckpt)):
        result = warmstart(CKPT_DIR=str(ckpt), **SHORT_RUN)
        assert result.returncode == 4 and "room for two" in result.stderr
        assert list(ckpt.iterdir()) == []


def test_disk_full_mid_run_fails_cleanly_keeping_previous(tmp_path: Path) -> None:
    first = warmstart(CKPT_DIR=str(tmp_path), **FILES_ONLY_RUN)
    assert first.returncode == 0, first.stderr
    previous = tmp_path / "run_0" / "params.pkl"
    before = hashlib.sha256(previous.read_bytes()).hexdigest()

    def limit_file_size() -> None:  # a 20 MB file-size cap: the 58 MB snapshot cannot fit
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000_000, 20_000_000))

    result = subprocess.run([sys.executable, "-m", "warmstart"], preexec_fn=limit_file_size,
                            env=clean_env(CKPT_DIR=str(tmp_path), **FILES_ONLY_RUN),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "no space left" in result.stderr and "previous snapshot is intact" in result.stderr
    # one line: nothing the failed run left (its emulator) is reported as leaked at the exit
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert hashlib.sha256(previous.read_bytes()).hexdigest() == before
    assert not (tmp_path / "run_1" / "params.pkl").exists()
    assert not [p for p in (tmp_path / "run_1").iterdir() if TEMP_MARKER in p.name]
    manifest = json.loads((tmp_path / "run_1" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"].startswith("exit 4: ")
    report = warmstart("report", str(tmp_path))
    assert "run_1 failed: exit 4: " in report.stdout and "1 failed" in report.stdout


def test_corrupt_newest_falls_back_to_older_good_one(tmp_path: Path) -> None:
    assert warmstart(CKPT_DIR=str(tmp_path), **FILES_ONLY_RUN).returncode == 0
    assert warmstart(CKPT_DIR=str(tmp_path), **FILES_ONLY_RUN).returncode == 0
    newest = tmp_path / "run_1" / "params.pkl"
    newest.write_bytes(newest.read_bytes()[:3_000_000])
    result = warmstart(CKPT_DIR=str(tmp_path), **FILES_ONLY_RUN)
    assert result.returncode == 0, result.stderr
    assert f"skipping unusable snapshot: {newest}" in result.stdout
    assert f"warm start from {tmp_path / 'run_0' / 'params.pkl'}" in result.stdout
    strict = warmstart(CKPT_DIR=str(tmp_path), STRICT_SNAPSHOTS="1", **FILES_ONLY_RUN)
    assert strict.returncode == 3 and str(newest) in strict.stderr


def test_keep_snapshots_prunes_old_itr_files(tmp_path: Path) -> None:
    result = warmstart(CKPT_DIR=str(tmp_path), **(SHORT_RUN | {
        "SNAPSHOT_MODE": "all", "LOG_EVERY": "40", "KEEP_SNAPSHOTS": "3"}))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "run_0").glob("itr_*.pkl"))
    assert names == ["itr_79.pkl", "itr_89.pkl", "itr_99.pkl"]
    listed = {e["file"] for e in _manifest(tmp_path / "run_0")["snapshots"]}
    assert listed == set(names)
