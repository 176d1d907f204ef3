"""SIGINT or SIGTERM at a random moment of every command, through the real process: the exit
code is 0 (it finished first) or the signal's 130/143, never a traceback, and no half-written
PNG, video or temp file is left.

The moment is drawn from when the process handles stop signals (its SIGTERM handler shows in
/proc/PID/status: ``python -m warmstart`` installs it first thing) to past its usual end. Before
that the interpreter itself is starting, which no program can speak for: there a signal gets
Python's own defaults, and the promise is only that nothing was written
(``test_a_signal_before_the_first_line_gets_pythons_defaults_and_writes_nothing``). Once the
command is done, a signal changes nothing: its exit code stands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FILES_ONLY_RUN, clean_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warmstart.checkpoint.atomic import TEMP_MARKER
from warmstart.checkpoint.manifest import read_manifest

SIGNALS = st.sampled_from([signal.SIGINT, signal.SIGTERM])
FEW = settings(max_examples=5, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
"""Each example is a real process (1-6 s); the fixture is only a path, read and never written."""
PNG_END = b"IEND\xaeB`\x82"


def _handles_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (the SigCgt mask of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(int(line.split()[1], 16) for line in status.splitlines()
                  if line.startswith("SigCgt:"))
    return bool(caught & (1 << (signal.SIGTERM - 1)))


DEFAULT_SIGINT_EXEC = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "os.execv(sys.executable, [sys.executable, '-m', 'warmstart', "
                      "*sys.argv[1:]])")
"""Start ``python -m warmstart`` (same pid, through exec) with SIGINT at its default, as a
terminal delivers it, even where this test runs in the background of a shell, which starts
its jobs ignoring SIGINT (and an ignored signal stays ignored, by design)."""


def _interrupt(args: list[str], settings_: dict[str, str], delay: float, signum: int,
               tmp: Path) -> subprocess.CompletedProcess:
    """Run ``warmstart ARGS``, send ``signum`` ``delay`` s after it handles signals."""
    env = clean_env(**settings_) | {"TMPDIR": str(tmp / "tmp")}
    (tmp / "tmp").mkdir(exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", DEFAULT_SIGINT_EXEC, *args], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    ready_by = time.monotonic() + 60
    while process.poll() is None and not _handles_sigterm(process.pid):
        assert time.monotonic() < ready_by, "the command never installed its handlers"
        time.sleep(0.005)
    time.sleep(delay)
    if process.poll() is None:
        os.kill(process.pid, signum)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _check_exit(done: subprocess.CompletedProcess, signum: int) -> None:
    assert done.returncode in (0, 128 + signum), (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr


def _check_no_debris(tmp: Path, output: Path | None, complete: Callable[[bytes], bool]) -> None:
    """No temp file anywhere under ``tmp``, and ``output`` absent or whole."""
    left = [p for p in tmp.rglob("*") if TEMP_MARKER in p.name or "warmstart-video" in p.name]
    assert left == []
    if output is not None and output.exists():
        assert complete(output.read_bytes()), f"{output} is partial"


def _reading_command(args: Callable[[Path], list[str]], signum: int, delay: float,
                     volume: Path, output: str | None,
                     complete: Callable[[bytes], bool] = lambda _: True) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        target = tmp / output if output else None
        done = _interrupt(args(tmp), {"CKPT_DIR": str(volume)}, delay, signum, tmp)
        _check_exit(done, signum)
        if done.returncode:
            assert done.stderr.strip().splitlines()[-1] == (
                f"warmstart: stopped by {signal.Signals(signum).name}")
        _check_no_debris(tmp, target, complete)


@FEW
@given(signum=SIGNALS, delay=st.floats(0, 2.5))
def test_inspect(rlpyt_snapshot: Path, signum: int, delay: float) -> None:
    _reading_command(lambda _: ["inspect", str(rlpyt_snapshot)], signum, delay,
                     rlpyt_snapshot.parent, None)


@FEW
@given(signum=SIGNALS, delay=st.floats(0, 3.0))
def test_report_with_plot(rlpyt_snapshot: Path, signum: int, delay: float) -> None:
    volume = rlpyt_snapshot.parent.parent
    _reading_command(lambda tmp: ["report", str(volume), "--plot", str(tmp / "runs.png")],
                     signum, delay, volume, "runs.png", lambda data: data.endswith(PNG_END))


@FEW
@given(signum=SIGNALS, delay=st.floats(0, 3.0))
def test_lineage_with_curve(rlpyt_snapshot: Path, signum: int, delay: float) -> None:
    _reading_command(lambda tmp: ["lineage", str(rlpyt_snapshot.parent), "--curve",
                                  str(tmp / "curve.png")],
                     signum, delay, rlpyt_snapshot.parent, "curve.png",
                     lambda data: data.endswith(PNG_END))


@FEW
@given(signum=SIGNALS, delay=st.floats(0, 5.0))
def test_eval_with_video(rlpyt_snapshot: Path, signum: int, delay: float) -> None:
    # an MP4 is whole once ffmpeg wrote its index (moov) at the end
    _reading_command(lambda tmp: ["eval", str(rlpyt_snapshot), "--episodes", "1",
                                  "--max-steps", "300", "--video", str(tmp / "game.mp4")],
                     signum, delay, rlpyt_snapshot.parent, "game.mp4",
                     lambda data: b"moov" in data)


@FEW
@given(signum=SIGNALS, delay=st.floats(0, 6.0))
def test_train_start_up(signum: int, delay: float) -> None:
    """Before its run exists, training stops at once; after, with a final snapshot: either
    way the run never stays 'running' and nothing is partial."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        ckpt = tmp / "ckpt"
        ckpt.mkdir()
        done = _interrupt([], {"CKPT_DIR": str(ckpt), **FILES_ONLY_RUN}, delay, signum, tmp)
        _check_train(done, signum, tmp)


def _check_train(done: subprocess.CompletedProcess, signum: int, tmp: Path) -> None:
    """Training's promise: 0 or 130/143, its runs stopped or finished, nothing partial."""
    ckpt = tmp / "ckpt"
    _check_exit(done, signum)
    for run in ckpt.iterdir():
        manifest = read_manifest(run)
        assert manifest is not None and manifest["status"] in ("stopped", "finished")
    if done.returncode and not any(ckpt.iterdir()):
        assert done.stderr.strip() == f"warmstart: stopped by {signal.Signals(signum).name}"
    _check_no_debris(tmp, None, lambda _: True)


@FEW
@given(signum=SIGNALS, delay=st.floats(0, 0.3))
def test_a_signal_before_the_first_line_gets_pythons_defaults_and_writes_nothing(
        signum: int, delay: float) -> None:
    """Sent ``delay`` s after the process starts, whether it handles signals yet or not. If it
    did when the signal was sent, training's promise holds. If not, the signal may land
    while the interpreter starts, before any of our code runs: Python's defaults then end the
    process (by the signal; for SIGINT maybe with Python's own KeyboardInterrupt traceback, and
    exit code 1 where it cut short the interpreter's own start-up: "Fatal Python error", "Could
    not import runpy module") having printed and written nothing."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "ckpt").mkdir()
        (tmp / "tmp").mkdir()
        env = clean_env(CKPT_DIR=str(tmp / "ckpt"), **FILES_ONLY_RUN) | {
            "TMPDIR": str(tmp / "tmp")}
        process = subprocess.Popen(
            [sys.executable, "-c", DEFAULT_SIGINT_EXEC], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(delay)
        handled = _handles_sigterm(process.pid)  # checked before: it cannot stop handling
        if process.poll() is None:
            os.kill(process.pid, signum)
        out, err = process.communicate(timeout=300)
        done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        if handled or done.returncode >= 0 and not err.rstrip().endswith("KeyboardInterrupt"):
            _check_train(done, signum, tmp)
        else:
            assert done.returncode == -signum or (
                signum == signal.SIGINT and done.returncode == 1), (done.returncode, err)
            assert out == "" and sorted(tmp.rglob("*")) == [tmp / "ckpt", tmp / "tmp"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_drawing_leaves_no_png(rlpyt_snapshot: Path, tmp_path: Path,
                                            signum: int) -> None:
    """A fixed moment inside the command, for a test that cannot miss it: right away."""
    done = _interrupt(["lineage", str(rlpyt_snapshot.parent), "--curve",
                       str(tmp_path / "c.png")], {}, 0.0, signum, tmp_path)
    assert done.returncode == 128 + signum, done.stdout + done.stderr
    assert done.stderr.strip() == f"warmstart: stopped by {signal.Signals(signum).name}"
    _check_no_debris(tmp_path, tmp_path / "c.png", lambda data: data.endswith(PNG_END))


def test_a_signal_that_lands_in_a_finalizer_still_stops_the_program() -> None:
    """Python prints and drops an exception raised in a weakref callback or ``__del__``; a
    stop signal arriving there must still reach the program, without a traceback."""
    code = ("import os, signal, weakref\n"
            "from warmstart import signals\n"
            "signals.install()\n"
            "class Held: pass\n"
            "held = Held()\n"
            "ref = weakref.ref(held, lambda _: os.kill(os.getpid(), signal.SIGTERM))\n"
            "try:\n"
            "    del held\n"
            "    for _ in range(10**8): pass\n"
            "except signals.Interrupted as stop:\n"
            "    raise SystemExit(signals.say_stopped(stop))\n"
            "print('not stopped')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=clean_env(), check=False)
    assert done.returncode == 143, done
    assert done.stderr == "warmstart: stopped by SIGTERM\n" and "not stopped" not in done.stdout


SIGNAL_AS_FFMPEG_STARTS = """\
import os, signal, subprocess, sys
from pathlib import Path
import numpy as np
from warmstart import signals
from warmstart.engine.playing.video import VideoWriter
started = []
class SignalledPopen(subprocess.Popen):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if kwargs.get("stdin") == subprocess.PIPE:  # the encoder, not a version check
            started.append(self)
            os.kill(os.getpid(), signal.SIGTERM)
subprocess.Popen = SignalledPopen
signals.install()
writer = VideoWriter(Path(sys.argv[1]), print)
try:
    writer.add(np.zeros((210, 160, 3), np.uint8))
    print("not stopped")
except signals.Interrupted as stop:
    writer.discard()
    print("ffmpeg running:", started[0].poll() is None)
    raise SystemExit(signals.say_stopped(stop))
"""


def test_a_signal_as_ffmpeg_starts_waits_until_it_holds_a_frame(tmp_path: Path) -> None:
    """imageio starts ffmpeg before its generator reaches the clean-up that stops it: a stop
    signal landing right after the start must wait until it did, or ffmpeg outlives the
    command and writes its own error to the command's stderr after the one line."""
    pytest.importorskip("imageio_ffmpeg")
    done = subprocess.run([sys.executable, "-c", SIGNAL_AS_FFMPEG_STARTS,
                           str(tmp_path / "game.mp4")], capture_output=True, text=True,
                          timeout=120, env=clean_env() | {"TMPDIR": str(tmp_path)}, check=False)
    assert done.returncode == 143, done
    assert done.stdout == "ffmpeg running: False\n"
    assert done.stderr == "warmstart: stopped by SIGTERM\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_an_import_waits_for_the_import(tmp_path: Path, signum: int) -> None:
    """An import cut short leaves a half-initialised module (numpy then fails its own retry
    with an ImportError traceback; torch fails or crashes when imported again): a stop
    signal that lands in one is raised once the import is done."""
    (tmp_path / "signals_itself.py").write_text(
        f"import os\nos.kill(os.getpid(), {int(signum)})\nWHOLE = True\n")
    code = ("import signal, sys\n"
            "signal.signal(signal.SIGINT, signal.SIG_DFL)  # see DEFAULT_SIGINT_EXEC\n"
            "from warmstart import signals\n"
            "signals.install()\n"
            "try:\n"
            "    import signals_itself\n"
            "    for _ in range(10**8): pass\n"
            "except signals.Interrupted as stop:\n"
            "    print('imported whole:', getattr(sys.modules.get('signals_itself'), 'WHOLE', "
            "False))\n"
            "    raise SystemExit(signals.say_stopped(stop))\n"
            "print('not stopped')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=clean_env(), check=False)
    assert done.returncode == 128 + signum, done
    assert done.stdout == "imported whole: True\n"
    assert done.stderr == f"warmstart: stopped by {signal.Signals(signum).name}\n"


SIGNAL_AT_EXIT = """\
import os, runpy, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)  # see DEFAULT_SIGINT_EXEC
class SignalAtExit:
    \"\"\"Sends the signal when Python finalizes this module's globals: after its own exit
    handlers, when it has put back the default action of every signal it handled.\"\"\"
    def __del__(self, kill=os.kill, pid=os.getpid(), signum={signum}):
        kill(pid, signum)
at_exit = SignalAtExit()
{entry}
"""
ENTRIES = {"python -m warmstart": "runpy.run_module('warmstart', run_name='__main__')",
           "console script": "from warmstart.__main__ import run\nsys.exit(run())"}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_python_exits_changes_nothing(rlpyt_snapshot: Path, tmp_path: Path,
                                                      signum: int, entry: str) -> None:
    """The command is done and its exit code decided: a signal as the interpreter exits is
    ignored (with Python's defaults, the process died by it: return code -2 or -15)."""
    code = SIGNAL_AT_EXIT.format(signum=int(signum), entry=ENTRIES[entry])
    curve = tmp_path / "curve.png"
    done = subprocess.run(
        [sys.executable, "-c", code, "lineage", str(rlpyt_snapshot.parent), "--curve",
         str(curve)], capture_output=True, text=True, timeout=300,
        env=clean_env() | {"TMPDIR": str(tmp_path)}, check=False)
    assert done.returncode == 0, done
    assert done.stderr == "" and done.stdout.endswith(f"learning curve: {curve}\n")
    _check_no_debris(tmp_path, curve, lambda data: data.endswith(PNG_END))
