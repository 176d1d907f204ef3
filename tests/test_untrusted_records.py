"""A snapshot and the records beside it are data from outside: every number in them passes the
range check of what it stands for, and one out of range is refused as the file's fault, in one
line, before anything is written (issue 26, "Records no one should trust").

Property tests (Hypothesis) drive the readers in-process over the whole range of a value
(huge, negative, NaN, infinite, fractional); a few cases of each kind go through the real
`warmstart` command as a user meets them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import FILES_ONLY_RUN, clean_env, warmstart
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warmstart.checkpoint import records
from warmstart.checkpoint import snapshot as snap
from warmstart.config import MAX_STEPS, MAX_UPDATES
from warmstart.config import settings as config_settings
from warmstart.errors import SnapshotError

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
NUMBERS = (st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([2**63, 2**63 - 1, 2**64, -1, 0, 1, MAX_STEPS, MAX_STEPS + 1]))


def _model() -> dict[str, torch.Tensor]:
    """An AtariDqnModel state dict for 6 actions (pong), its layers shrunk where the reader
    does not look: enough for every check a snapshot passes before training."""
    shapes = {"conv.conv.0.weight": (32, 4, 8, 8), "conv.conv.0.bias": (32,),
              "conv.conv.2.weight": (1,), "conv.conv.2.bias": (1,),
              "conv.conv.4.weight": (1,), "conv.conv.4.bias": (1,),
              "head.model.0.weight": (2, 2), "head.model.0.bias": (2,),
              "head.model.2.weight": (6, 2), "head.model.2.bias": (6,)}
    return {name: torch.zeros(shape) for name, shape in shapes.items()}


def _params(**changes: Any) -> dict[str, Any]:
    model = _model()
    params: dict[str, Any] = {
        "itr": 9, "cum_steps": 36, "agent_state_dict": {"model": model, "target": model},
        "optimizer_state_dict": {
            "state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(1),
                          "exp_avg_sq": torch.zeros(1)}},
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 3e-4,
                              "weight_decay": 0, "params": [0]}]}}
    for key, value in changes.items():
        if key in ("itr", "cum_steps"):
            params[key] = value
        elif key == "step":
            params["optimizer_state_dict"]["state"][0]["step"] = value
        else:
            params["optimizer_state_dict"]["param_groups"][0][key] = value
    return params


def _save(folder: Path, params: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.pkl"
    torch.save(params, path)
    return path


def _one_line(err: BaseException, path: Path) -> str:
    text = str(err)
    assert "\n" not in text and str(path) in text, text
    return text


def _stopped(result: subprocess.CompletedProcess, code: int) -> str:
    """The single error line of a run that stopped with ``code``, and no traceback."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- counters ------------------------------------------------------------------------------

@PROPERTY
@given(key=st.sampled_from(["itr", "cum_steps"]), value=NUMBERS)
def test_a_counter_out_of_its_range_is_one_line_naming_it(tmp_path: Path, key: str,
                                                          value: Any) -> None:
    path = _save(tmp_path / "c", _params(**{key: value}))
    sane = isinstance(value, int) and 0 <= value <= MAX_STEPS
    for reader in (snap.read, snap.read_training):
        if sane:
            assert getattr(reader(path), key) == value
        else:
            with pytest.raises(SnapshotError) as caught:
                reader(path)
            assert f"'{key}'" in _one_line(caught.value, path)


@pytest.mark.parametrize("key", ["itr", "cum_steps"])
def test_train_refuses_a_counter_of_2_to_the_63_untouched(tmp_path: Path, key: str) -> None:
    path = _save(tmp_path / "old", _params(**{key: 2**63}))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    line = _stopped(warmstart(CKPT_DIR=str(ckpt), INIT_SNAPSHOT=str(path), **FILES_ONLY_RUN), 3)
    assert f"'{key}' is {2**63}" in line and "damaged" in line
    assert list(ckpt.iterdir()) == []


def test_a_snapshot_with_a_counter_of_2_to_the_63_is_passed_over_by_discovery(
        rlpyt_snapshot: Path, tmp_path: Path) -> None:
    """As the newest snapshot on a volume (most updates) it would be every later job's start:
    it is named and skipped, and the job starts from the next one."""
    ckpt = tmp_path / "ckpt"
    bad = _save(ckpt / "bad", _params(itr=2**63, step=torch.tensor(1e9)))
    (ckpt / "good").mkdir()
    shutil.copy(rlpyt_snapshot, ckpt / "good" / "params.pkl")
    done = warmstart(CKPT_DIR=str(ckpt), **(FILES_ONLY_RUN | {"STEPS": "100"}))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"skipping unusable snapshot: {bad}: 'itr' is {2**63}" in done.stdout
    assert f"warm start from {ckpt / 'good' / 'params.pkl'}" in done.stdout


# --- optimizer state -----------------------------------------------------------------------

@PROPERTY
@given(key=st.sampled_from(["step", "lr", "eps", "weight_decay"]), value=NUMBERS)
def test_an_optimizer_number_out_of_range_is_one_line(tmp_path: Path, key: str,
                                                      value: Any) -> None:
    stored = torch.tensor(float(value)) if key == "step" else value  # as torch keeps it
    path = _save(tmp_path / "o", _params(**{key: stored}))
    number = float(stored)
    high = MAX_UPDATES if key == "step" else math.inf
    sane = math.isfinite(number) and 0 <= number <= high and (
        key != "step" or number.is_integer())
    if sane:
        snap.read(path)
    else:
        with pytest.raises(SnapshotError) as caught:
            snap.read(path)
        assert key in _one_line(caught.value, path)


@pytest.mark.parametrize(("key", "value"), [
    ("step", torch.tensor(1e30)), ("step", torch.tensor(-1.0)), ("lr", -1e-4),
    ("lr", math.nan), ("betas", (1.5, 0.999)), ("eps", -1.0)],
    ids=["step 1e30", "step -1", "lr negative", "lr nan", "beta 1.5", "eps negative"])
def test_train_refuses_a_damaged_optimizer_state_with_lr_unset(
        tmp_path: Path, key: str, value: Any) -> None:
    path = _save(tmp_path / "old", _params(**{key: value}))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    line = _stopped(warmstart(CKPT_DIR=str(ckpt), INIT_SNAPSHOT=str(path), **FILES_ONLY_RUN), 3)
    assert "optimizer_state_dict is damaged" in line and key in line
    assert list(ckpt.iterdir()) == []


def test_lr_that_cannot_train_is_refused_up_front(tmp_path: Path) -> None:
    line = _stopped(warmstart(CKPT_DIR=str(tmp_path), LR="1e308", **FILES_ONLY_RUN), 2)
    assert line.startswith("warmstart: error: LR='1e308'") and "from 0 to 1" in line
    assert list(tmp_path.iterdir()) == []


# --- params.json ---------------------------------------------------------------------------

RECORDED_KEYS = [(env, section, key) for env, (section, key) in records.RECORDED_SETTINGS.items()]


def _limits(env: str) -> tuple[str, float | None, float | None]:
    f = next(f for f in config_settings() if f.metadata["env"] == env)
    kind = str(f.type).replace(" | None", "").strip()
    return kind, f.metadata["minimum"], f.metadata["maximum"]


@PROPERTY
@given(which=st.sampled_from(RECORDED_KEYS), value=NUMBERS | st.booleans() | st.text(max_size=5))
def test_a_recorded_setting_is_adopted_only_within_its_settings_range(
        tmp_path: Path, which: tuple[str, str, str], value: Any) -> None:
    env, section, key = which
    folder = tmp_path / "r"
    folder.mkdir(exist_ok=True)
    (folder / "params.json").write_text(json.dumps({"game": "pong", section: {key: value}}))
    found = records.beside(folder / "params.pkl")
    kind, low, high = _limits(env)
    if kind == "bool":
        sane = isinstance(value, bool)
    else:
        sane = (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and (low is None or value >= low)
                and (high is None or value <= high)
                and (kind != "int" or float(value).is_integer()))
    if sane:
        assert found.problem is None and found.settings[env] == value
    else:
        assert env not in found.settings
        assert found.problem is not None and "params.json" in found.problem and key in found.problem


@PROPERTY
@given(batch_t=NUMBERS, batch_b=st.integers(1, 16))
def test_a_recorded_sampler_shape_is_adopted_only_within_batch_ts_range(
        tmp_path: Path, batch_t: Any, batch_b: int) -> None:
    folder = tmp_path / "s"
    folder.mkdir(exist_ok=True)
    (folder / "params.json").write_text(json.dumps(
        {"sampler": {"batch_T": batch_t, "batch_B": batch_b}}))
    found = records.beside(folder / "params.pkl")
    if isinstance(batch_t, (int, float)) and math.isfinite(batch_t) and 1 <= batch_t <= 1024 \
            and float(batch_t).is_integer():
        assert found.problem is None and found.shape.batch_T == batch_t
    else:
        assert found.shape is None and "batch_T" in found.problem


@pytest.mark.parametrize(("params_json", "named"), [
    ('{"game": "pong", "algo": {"discount": NaN}}', "discount"),
    ('{"game": "pong", "algo": {"min_steps_learn": Infinity}}', "min_steps_learn"),
    ('{"game": "pong", "algo": {"batch_size": -Infinity}}', "batch_size"),
    ('{"game": "pong", "algo": {"discount": 5}}', "discount"),
    ('{"game": "pong", "agent": {"eps_final": 7}}', "eps_final"),
    ('{"game": "pong", "sampler": {"batch_T": 10000000, "batch_B": 1}}', "batch_T"),
], ids=["nan", "infinity", "minus infinity", "discount 5", "eps_final 7", "batch_T 1e7"])
def test_train_names_an_out_of_range_record_as_the_records_fault(
        rlpyt_snapshot: Path, tmp_path: Path, params_json: str, named: str) -> None:
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(rlpyt_snapshot, old / "params.pkl")
    (old / "params.json").write_text(params_json)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    line = _stopped(warmstart(CKPT_DIR=str(ckpt), INIT_SNAPSHOT=str(old / "params.pkl"),
                              **FILES_ONLY_RUN), 3)
    assert f"{old / 'params.json'} records {named}" in line and "damaged" in line
    assert list(ckpt.iterdir()) == []


def test_a_recorded_shape_that_cannot_train_blames_the_record_not_the_settings(
        rlpyt_snapshot: Path, tmp_path: Path) -> None:
    """Each value in range, together too many updates per iteration: the record's shape is
    named, not the user's REPLAY_RATIO alone."""
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(rlpyt_snapshot, old / "params.pkl")
    (old / "params.json").write_text(json.dumps(
        {"game": "pong", "sampler": {"batch_T": 1024, "batch_B": 1024}}))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    line = _stopped(warmstart(CKPT_DIR=str(ckpt), INIT_SNAPSHOT=str(old / "params.pkl"),
                              **FILES_ONLY_RUN), 3)
    assert "recorded sampler shape batch_T=1024 x batch_B=1024" in line
    assert list(ckpt.iterdir()) == []


# --- a file's size ---------------------------------------------------------------------------

def _peak_rss_mb(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run `warmstart` in a child of a fresh interpreter; return its result and the peak RSS
    of that child alone (ru_maxrss of the children of a process that has no other)."""
    probe = ("import json, resource, subprocess, sys; "
             "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(json.dumps([r.returncode, r.stdout, r.stderr, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "warmstart", *args],
                          env=clean_env(**env), capture_output=True, text=True, timeout=600,
                          check=True)
    code, out, err, peak_kb = json.loads(done.stdout)
    return subprocess.CompletedProcess(args, code, out, err), peak_kb / 1024


@pytest.mark.parametrize("head", [b"", b"PK\x03\x04", b"\x80\x02\x8a\x0a"],
                         ids=["zeros", "zip header", "pickle header"])
def test_a_3_gb_sparse_file_is_judged_by_its_header_not_read_whole(
        tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "params.pkl"
    with open(path, "wb") as out:
        out.write(head)
        out.truncate(3 << 30)
    done, peak_mb = _peak_rss_mb("inspect", str(path))
    assert "not a snapshot file" in _stopped(done, 3)
    assert peak_mb < 1024, f"peak RSS {peak_mb:.0f} MB reading a 3 GB file"


def test_a_zip_listing_more_records_than_a_snapshot_has_is_refused_from_its_end_record(
        tmp_path: Path) -> None:
    """A directory of 100,000 entries is not parsed into memory: the end record's count
    decides."""
    import zipfile

    path = tmp_path / "params.pkl"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(100_000):
            archive.writestr(f"a/{i}", b"")
    for reader in (snap.read, snap.read_training):
        with pytest.raises(SnapshotError, match="a zip archive of 100000 records"):
            reader(path)


def test_a_snapshot_is_read_without_a_second_copy_of_its_bytes(
        rlpyt_snapshot: Path, tmp_path: Path) -> None:
    """A real 58 MB snapshot padded inside its zip to about 360 MB of tensors: reading it
    holds its tensors once (not the file's bytes and then the tensors as well)."""
    params = torch.load(rlpyt_snapshot, weights_only=True)
    state = params["optimizer_state_dict"]["state"]
    state[99] = {"step": torch.tensor(1.0), "exp_avg": torch.zeros(75_000_000)}
    path = tmp_path / "params.pkl"
    torch.save(params, path)
    size_mb = os.path.getsize(path) / 2**20
    baseline_done, baseline_mb = _peak_rss_mb("inspect", str(rlpyt_snapshot))
    assert baseline_done.returncode == 0, baseline_done.stderr
    done, peak_mb = _peak_rss_mb("inspect", str(path))
    assert done.returncode == 0, done.stderr
    assert peak_mb - baseline_mb < 1.4 * size_mb, (peak_mb, baseline_mb, size_mb)


# --- a damaged RUN_NAME run: checked before anything is written ----------------------------

@pytest.fixture(scope="module")
def job_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A volume holding ``job``, a short finished RUN_NAME run."""
    ckpt = tmp_path_factory.mktemp("volume")
    done = warmstart(CKPT_DIR=str(ckpt), RUN_NAME="job", **(FILES_ONLY_RUN | {"STEPS": "100"}))
    assert done.returncode == 0, done.stdout + done.stderr
    return ckpt


def _records(run: Path) -> dict[str, bytes]:
    """Every file of a run but its lock file (which locking opens), by name."""
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.name != ".warmstart.lock"}


def test_a_run_name_run_whose_snapshot_is_not_its_own_stops_with_7_untouched(
        job_run: Path, rlpyt_snapshot: Path, tmp_path: Path) -> None:
    """A params.pkl the run's manifest does not vouch for: exit 7 before the run's manifest
    (target, status) or progress.csv change, not after a row was appended."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(job_run, ckpt)
    shutil.copy(rlpyt_snapshot, ckpt / "job" / "params.pkl")
    before = _records(ckpt / "job")
    line = _stopped(warmstart(CKPT_DIR=str(ckpt), RUN_NAME="job",
                              **(FILES_ONLY_RUN | {"STEPS": "200"})), 7)
    assert "not a snapshot this run wrote" in line
    assert _records(ckpt / "job") == before


def test_a_progress_csv_past_its_size_limit_is_one_plain_line(job_run: Path,
                                                              tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(job_run, ckpt)
    with open(ckpt / "job" / "progress.csv", "r+b") as out:
        out.truncate(300 << 20)
    line = _stopped(warmstart(CKPT_DIR=str(ckpt), RUN_NAME="job",
                              **(FILES_ONLY_RUN | {"STEPS": "200"})), 7)
    assert "more than the 256.0 MB such a file can be" in line and "[Errno" not in line


def test_a_resume_that_cannot_fit_the_machine_is_refused_with_the_run_untouched(
        job_run: Path, tmp_path: Path) -> None:
    """Extending a RUN_NAME run to a replay of 84 GB: exit 2 (tests/test_memory.py) before
    the run's target, status or rows change."""
    from warmstart.engine.hardware.memory import memory_limit

    if memory_limit().bytes > 60 << 30:
        pytest.skip("this machine may use more than 60 GiB: the settings fit")
    ckpt = tmp_path / "ckpt"
    shutil.copytree(job_run, ckpt)
    before = _records(ckpt / "job")
    line = _stopped(warmstart(CKPT_DIR=str(ckpt), RUN_NAME="job", **(FILES_ONLY_RUN | {
        "STEPS": "10_000_000", "REPLAY_SIZE": "10_000_000"})), 2)
    assert "REPLAY_SIZE=10,000,000" in line
    assert _records(ckpt / "job") == before
