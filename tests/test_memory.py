"""The memory a container has: its cgroup's limit read as the kernel applies it (fake cgroup
trees, as test_cpus.py does for the CPU quota), the run's plan against it, and a REPLAY_SIZE or
BATCH_SIZE that cannot fit refused before anything is written (the real command)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FILES_ONLY_RUN, warmstart
from hypothesis import given, settings
from hypothesis import strategies as st
from warmstart.checkpoint.counters import Budget
from warmstart.checkpoint.start import Plan
from warmstart.config import SamplerShape, load
from warmstart.engine.hardware.memory import MemoryLimit, cgroup_limit, memory_limit
from warmstart.engine.replays.replay import UniformReplay
from warmstart.engine.runners import memory_plan
from warmstart.errors import ConfigError

GiB = 1 << 30


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def _v2(root: Path, path: str, files: dict[str, dict[str, str]]) -> Path:
    """A cgroup v2 mount at ``root``: ``files`` maps a cgroup path to its files."""
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / path.strip("/")).mkdir(parents=True, exist_ok=True)
    for folder, contents in files.items():
        (root / folder.strip("/")).mkdir(parents=True, exist_ok=True)
        for name, text in contents.items():
            (root / folder.strip("/") / name).write_text(text + "\n")
    return root


def test_v2_takes_the_lowest_of_memory_max_and_high_up_the_parents(tmp_path: Path) -> None:
    root = _v2(tmp_path / "cg", "/kubepods/pod1/ctr", {
        "/kubepods/pod1/ctr": {"memory.max": "max", "memory.high": "max"},
        "/kubepods/pod1": {"memory.max": str(16 * GiB), "memory.high": str(12 * GiB)},
        "/kubepods": {"memory.max": str(64 * GiB)},
        "/": {"memory.max": str(1 * GiB)},  # the mount's root binds every cgroup under it
    })
    proc = _proc(tmp_path, "0::/kubepods/pod1/ctr\n")
    limit = cgroup_limit(root, proc)
    assert limit == MemoryLimit(1 * GiB, str(root / "memory.max"))
    (root / "memory.max").write_text("max\n")
    limit = cgroup_limit(root, proc)
    assert limit == MemoryLimit(12 * GiB, str(root / "kubepods/pod1/memory.high"))


def test_v2_in_a_cgroup_namespace_reads_the_mount_itself(tmp_path: Path) -> None:
    """Inside a container /proc/self/cgroup says 0::/ and the mount is the container's."""
    root = _v2(tmp_path / "cg", "/", {"/": {"memory.max": str(3 * GiB)}})
    assert cgroup_limit(root, _proc(tmp_path, "0::/\n")).bytes == 3 * GiB
    # a path the mount does not show (no namespace, another mount) falls back to the mount
    assert cgroup_limit(root, _proc(tmp_path, "0::/elsewhere/x\n")).bytes == 3 * GiB


def test_v1_reads_memory_limit_in_bytes_and_ignores_its_unlimited_value(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    ours = root / "memory" / "docker" / "abc"
    ours.mkdir(parents=True)
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "memory" / "docker" / "memory.limit_in_bytes").write_text(f"{8 * GiB}\n")
    (ours / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    proc = _proc(tmp_path, "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    assert cgroup_limit(root, proc) == MemoryLimit(
        8 * GiB, str(root / "memory" / "docker" / "memory.limit_in_bytes"))
    (root / "memory" / "docker" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cgroup_limit(root, proc) is None


def test_no_cgroup_or_garbage_means_physical_memory(tmp_path: Path) -> None:
    assert cgroup_limit(tmp_path / "none", tmp_path / "no-proc-file") is None
    root = _v2(tmp_path / "cg", "/", {"/": {"memory.max": "lots", "memory.high": "-5"}})
    assert cgroup_limit(root, _proc(tmp_path, "0::/\n")) is None
    assert memory_limit(tmp_path / "none", tmp_path / "nothing", physical=5 * GiB) == \
        MemoryLimit(5 * GiB, "physical memory")
    # a limit above the machine's memory binds nothing: the machine's is the limit
    root = _v2(tmp_path / "big", "/", {"/": {"memory.max": str(10**15)}})
    assert memory_limit(root, _proc(tmp_path, "0::/\n"), physical=5 * GiB).source == \
        "physical memory"


@settings(max_examples=50, deadline=None)
@given(limits=st.lists(st.one_of(st.just("max"), st.integers(1, 2**62).map(str),
                                 st.text(alphabet="0123456789 -amx", max_size=6)),
                      min_size=1, max_size=4))
def test_v2_limit_is_the_lowest_readable_number_along_the_chain(limits: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        chain = ["/", "/a", "/a/b", "/a/b/c"][:len(limits)]
        root = _v2(tmp / "cg", chain[-1], {c: {"memory.max": v.replace("\n", "")}
                                           for c, v in zip(chain, limits)})
        proc = _proc(tmp, f"0::{chain[-1]}\n")
        numbers = [int(v) for v in limits
                   if v.strip().isdigit() and 0 < int(v) < 1 << 63]  # "max", "-5", "": none
        found = cgroup_limit(root, proc)
        assert (found.bytes if found else None) == (min(numbers) if numbers else None)


def _plan(steps: int = 1_000_000, first_itr: int = 0, **settings: str) -> Plan:
    config = load({"STEPS": str(steps), **settings})
    shape = SamplerShape(config.batch_t or 4, config.batch_b or 1)
    budget = Budget(first_itr, first_itr + config.iterations(shape) - 1, 0, shape)
    return Plan(config, budget, first_itr, restores_replay=False)


def test_the_replay_is_counted_at_the_size_it_reaches_by_the_target() -> None:
    per = UniformReplay.bytes_per_transition()
    short = memory_plan.need(_plan(steps=50_000), engine="native", device_type="cpu", n_actions=6)
    assert short.host["replay"][0] == 50_000 * per
    full = memory_plan.need(_plan(steps=5_000_000), engine="native", device_type="cpu",
                            n_actions=6)
    assert full.host["replay"][0] == 1_000_000 * per
    # a restored replay counts the steps the run sampled before this process too
    plan = _plan(steps=100_000)
    later = Plan(plan.config, plan.budget, first_itr=20_000, restores_replay=False)
    restored = Plan(plan.config, plan.budget, first_itr=20_000, restores_replay=True)
    assert later.replay_transitions == 20_000 and restored.replay_transitions == 100_000


def test_on_a_gpu_the_device_replay_takes_its_whole_size_where_it_fits() -> None:
    plan = _plan(steps=1000, REPLAY_SIZE="1000000")
    whole = 1_000_000 * UniformReplay.bytes_per_transition()
    fits = memory_plan.need(plan, engine="native", device_type="cuda", n_actions=6,
                            device_free=80 * GiB)
    assert fits.device == whole and fits.host["replay"][0] == 0
    pinned = memory_plan.need(plan, engine="native", device_type="cuda", n_actions=6,
                              device_free=4 * GiB)
    assert pinned.device == 0 and pinned.host["replay"][0] == whole


def test_a_plan_past_the_limit_names_the_settings_the_need_and_the_limit() -> None:
    lines: list[str] = []
    limit = MemoryLimit(4 * GiB, "/sys/fs/cgroup/memory.max")
    with pytest.raises(ConfigError) as caught:
        memory_plan.check(_plan(REPLAY_SIZE="1000000"), engine="native", device_type="cpu",
                          n_actions=6, log=lines.append, limit=limit)
    message = str(caught.value)
    assert "REPLAY_SIZE=1,000,000" in message and "4.0 GiB" in message
    assert "/sys/fs/cgroup/memory.max" in message and "\n" not in message
    assert lines and lines[0].startswith("memory plan: replay")
    with pytest.raises(ConfigError, match="BATCH_SIZE=8192"):
        memory_plan.check(_plan(steps=1000, BATCH_SIZE="8192"), engine="native",
                          device_type="cpu", n_actions=6, log=lines.append, limit=limit)
    memory_plan.check(_plan(steps=100_000), engine="native", device_type="cpu", n_actions=6,
                      log=lines.append, limit=limit)


def test_the_workers_shared_buffer_is_checked_against_the_temporary_folder(
        tmp_path: Path) -> None:
    plan = _plan(steps=1000, BATCH_B="1024", ENV_WORKERS="2", REPLAY_RATIO="0.01")
    found = memory_plan.check(plan, engine="native", device_type="cpu", n_actions=6,
                              log=lambda _: None, limit=MemoryLimit(64 * GiB, "test"),
                              temp_dir=tmp_path)
    assert found.shared > 1024 * 4 * 104 * 80 and found.host["workers"][0] > 0


@pytest.mark.parametrize(("setting", "named"), [
    ({"REPLAY_SIZE": "10_000_000", "STEPS": "10_000_000"}, "REPLAY_SIZE=10,000,000"),
    ({"BATCH_SIZE": "65536"}, "BATCH_SIZE=65536"),
], ids=["replay", "batch"])
def test_train_refuses_what_cannot_fit_the_machine_before_writing(
        tmp_path: Path, setting: dict[str, str], named: str) -> None:
    """A REPLAY_SIZE of 84 GB (or a batch of 64 GiB) on this machine: exit 2 at the start, the
    volume untouched, instead of an OOM kill hours later."""
    limit = memory_limit()
    if limit.bytes > 60 * GiB:
        pytest.skip(f"this machine may use {limit.bytes / GiB:.0f} GiB: the settings fit")
    result = warmstart(CKPT_DIR=str(tmp_path), **(FILES_ONLY_RUN | setting))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert named in lines[0] and f"{limit.bytes / GiB:.1f} GiB" in lines[0]
    assert "memory plan:" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_every_start_logs_its_memory_plan(tmp_path: Path) -> None:
    # the host replay's plan: on a GPU the replay is allocated whole in GPU memory instead
    result = warmstart(CKPT_DIR=str(tmp_path), **(FILES_ONLY_RUN | {"STEPS": "100",
                                                                   "DEVICE": "cpu"}))
    assert result.returncode == 0, result.stdout + result.stderr
    plan = next(line for line in result.stdout.splitlines() if "memory plan:" in line)
    assert "100 transitions by the run's target, of REPLAY_SIZE=2,000" in plan
    assert f"{memory_limit().bytes / GiB:.1f} GiB this process may use" in plan
    assert "loss n/a" in result.stdout and "loss nan" not in result.stdout
