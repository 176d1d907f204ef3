"""DEVICE on a machine with a GPU that torch cannot use: one line and exit 6, never a silent CPU run.

The GPU is simulated the way the container toolkit shows one: a /dev/nvidia0 device node and
/proc/driver/nvidia/version under a folder standing in for /, and (where a C compiler is at
hand) a libcuda.so.1 that answers cuDriverGetVersion as an old driver would.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import SHORT_RUN, warmstart
from warmstart.config import load
from warmstart.engine.hardware.device import resolve_device
from warmstart.engine.hardware.gpu_probe import PROBE_ROOT_ENV, driver_floor, find_gpu
from warmstart.errors import ConfigError, DeviceError

DRIVER_535 = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  "
              "Sun May 12 19:39:15 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
NO_LIBCUDA = "libcuda-not-here.so.1"

needs_no_usable_gpu = pytest.mark.skipif(torch.cuda.is_available(),
                                         reason="torch can use a real GPU here")


def fake_gpu_root(root: Path) -> Path:
    """A folder that looks like / on a node with one GPU and a 535 driver."""
    (root / "dev").mkdir(parents=True)
    (root / "dev" / "nvidia0").touch()
    (root / "dev" / "nvidiactl").touch()
    (root / "proc" / "driver" / "nvidia").mkdir(parents=True)
    (root / "proc" / "driver" / "nvidia" / "version").write_text(DRIVER_535)
    return root


def test_device_nodes_and_driver_version_are_found(tmp_path: Path) -> None:
    gpu = find_gpu(fake_gpu_root(tmp_path), libcuda=NO_LIBCUDA)
    assert gpu.present
    assert gpu.device_nodes == ("/dev/nvidia0",)
    assert gpu.driver_version == "535.183.01"
    assert gpu.describe() == "/dev/nvidia0, driver 535.183.01"


def test_no_gpu_without_device_nodes_or_libcuda(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidiactl").touch()  # the control node alone is not a GPU
    gpu = find_gpu(tmp_path, libcuda=NO_LIBCUDA)
    assert not gpu.present
    assert gpu.driver_version is None


def test_driver_floor_of_torch_cuda_builds() -> None:
    assert driver_floor("13.0") == "580"
    assert driver_floor("12.6") == "525"
    assert driver_floor("99.1") is None


@needs_no_usable_gpu
@pytest.mark.parametrize("setting", ["auto", "cuda"])
def test_unusable_gpu_stops_auto_and_cuda(tmp_path: Path, setting: str) -> None:
    gpu = find_gpu(fake_gpu_root(tmp_path), libcuda=NO_LIBCUDA)
    with pytest.raises(DeviceError) as err:
        resolve_device(load({"DEVICE": setting}), gpu)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(f"DEVICE={setting}: a GPU is present (/dev/nvidia0, driver 535.183.01)")
    assert f"torch {torch.__version__}" in line
    assert "DEVICE=cpu" in line
    if torch.version.cuda:
        assert f"built for CUDA {torch.version.cuda}" in line
    else:
        assert "CPU-only build" in line


def test_cpu_stays_the_explicit_way_on_a_gpu_node(tmp_path: Path) -> None:
    gpu = find_gpu(fake_gpu_root(tmp_path), libcuda=NO_LIBCUDA)
    assert resolve_device(load({"DEVICE": "cpu"}), gpu) == torch.device("cpu")


@needs_no_usable_gpu
def test_no_gpu_auto_is_cpu_and_cuda_is_a_config_error(tmp_path: Path) -> None:
    gpu = find_gpu(tmp_path, libcuda=NO_LIBCUDA)
    assert resolve_device(load({"DEVICE": "auto"}), gpu) == torch.device("cpu")
    with pytest.raises(ConfigError, match="DEVICE=cuda but this machine shows no NVIDIA GPU"):
        resolve_device(load({"DEVICE": "cuda"}), gpu)


@pytest.fixture
def old_libcuda(tmp_path: Path) -> Path:
    """A libcuda.so.1 whose cuDriverGetVersion says CUDA 12.2, as a 535 driver's does."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a stand-in libcuda.so.1")
    source = tmp_path / "libcuda.c"
    source.write_text("int cuDriverGetVersion(int *v) { *v = 12020; return 0; }\n")
    lib = tmp_path / "lib" / "libcuda.so.1"
    lib.parent.mkdir()
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    return lib


def test_libcuda_alone_shows_a_gpu_and_its_cuda_version(tmp_path: Path,
                                                         old_libcuda: Path) -> None:
    gpu = find_gpu(tmp_path / "empty-root", libcuda=str(old_libcuda))
    assert gpu.present and gpu.libcuda
    assert gpu.driver_cuda == "12.2"
    assert gpu.describe() == "libcuda.so.1 loaded, driver for CUDA 12.2"


@needs_no_usable_gpu
def test_train_on_a_simulated_gpu_node_exits_6_with_one_line(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    root = fake_gpu_root(tmp_path / "root")
    result = warmstart("train", CKPT_DIR=str(ckpt), DEVICE="auto", **SHORT_RUN,
                       **{PROBE_ROOT_ENV: str(root)})
    assert result.returncode == DeviceError.exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DEVICE=auto: a GPU is present (/dev/nvidia0, driver 535.183.01" in lines[0]
    assert list(ckpt.iterdir()) == []  # stopped before writing anything
