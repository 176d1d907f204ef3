"""Volumes without rename (docs/volumes.md, write modes): the probe, object mode, the refusal.

Real trainers on tests/fusefs.py's ``--object-store`` mount, which behaves as Mountpoint for S3
does: no rename, no append, a file replaced only through ``O_TRUNC`` and published when closed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FILES_ONLY_RUN, REPO, clean_env, warmstart
from fuse_volume import fuse_volume
from warmstart.checkpoint import capabilities, object_store
from warmstart.checkpoint.manifest import load_manifest

RUN = FILES_ONLY_RUN | {"RUN_NAME": "job"}


def _train(volume: Path, **settings: str) -> subprocess.CompletedProcess:
    return warmstart("train", CKPT_DIR=str(volume), **(RUN | settings))


def _probe_in_a_process(folder: Path) -> capabilities.Capabilities:
    """The probe as a start runs it, in a process of its own (its pid names the probe file)."""
    code = ("import sys, json, dataclasses; from pathlib import Path; "
            "from warmstart.checkpoint import capabilities as c; "
            "print(json.dumps(dataclasses.asdict(c.probe(Path(sys.argv[1])))))")
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        env=clean_env(), capture_output=True, text=True, check=True, cwd=REPO)
    return capabilities.Capabilities(**json.loads(done.stdout))


def test_the_probe_finds_what_each_volume_does(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    found = _probe_in_a_process(local)
    assert found == capabilities.Capabilities(None, None, None, None)
    assert capabilities.choose(local, "auto", found) == "rename"
    assert list(local.iterdir()) == []  # the probe's file is removed after
    with fuse_volume(tmp_path, object_store=()) as volume:
        found = _probe_in_a_process(volume.mountpoint)
        assert found.overwrite is None and found.delete is None
        assert found.rename == "Function not implemented" and found.append is not None
        assert capabilities.choose(volume.mountpoint, "auto", found) == "object"
        assert list(volume.backing.iterdir()) == []
    with fuse_volume(tmp_path, name="no-delete", object_store=("--no-delete",)) as volume:
        found = _probe_in_a_process(volume.mountpoint)
        assert found.delete == "Operation not permitted"
        left = [p.name for p in volume.backing.iterdir()]  # kept: hidden, named in the docs
        assert len(left) == 1 and left[0].startswith(capabilities.PREFIX), left


def _files(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if not p.name.startswith("events.out"))


def test_cold_then_warm_start_on_an_object_store(tmp_path: Path) -> None:
    with fuse_volume(tmp_path, object_store=()) as volume:
        cold = _train(volume.mountpoint)
        assert cold.returncode == 0, cold.stdout + cold.stderr
        assert "write mode object" in cold.stdout
        run = volume.backing / "job"
        manifest = load_manifest(run)
        assert manifest is not None and manifest["write_mode"] == "object"
        newest = max(manifest["snapshots"], key=lambda e: e["itr"])
        stage = f"itr_{newest['itr']}.pkl"
        # write-once snapshot, its copy under rlpyt's name, the newest two manifest versions
        versions = [p.name for _, _, p in object_store.versions(run)]
        assert _files(run) == sorted([".warmstart.lease", ".warmstart.lock", stage, "params.pkl",
                                      "params.json", "progress.csv", *versions])
        assert len(versions) == object_store.VERSIONS_KEPT
        digest = hashlib.sha256((run / stage).read_bytes()).hexdigest()
        assert digest == newest["sha256"] == hashlib.sha256(
            (run / "params.pkl").read_bytes()).hexdigest()
        assert {e["holder"] for e in manifest["snapshots"]} == {manifest["holder"]}
        assert torch.load(run / "params.pkl", weights_only=True)["itr"] == newest["itr"]

        warm = _train(volume.mountpoint, RUN_NAME="warm")
        assert warm.returncode == 0, warm.stdout + warm.stderr
        assert f"warm start from {volume.mountpoint / 'job' / stage} " in warm.stdout
        assert load_manifest(volume.backing / "warm")["parent"]["sha256"] == digest
        for command in ("inspect", "report", "lineage"):  # readers of the object layout
            shown = warmstart(command, str(volume.mountpoint / "warm"))
            assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr


def test_a_volume_without_rename_or_overwrite_is_refused_in_one_line(tmp_path: Path) -> None:
    with fuse_volume(tmp_path, object_store=("--no-overwrite",)) as volume:
        done = _train(volume.mountpoint)
        assert done.returncode == 4, done.stdout + done.stderr
        error = done.stderr.strip()
        assert len(error.splitlines()) == 1, error
        assert "neither rename a file (Function not implemented)" in error
        assert "O_TRUNC (Operation not permitted)" in error and "--allow-overwrite" in error
        assert list(volume.backing.iterdir()) == []  # no run folder, no probe file


def _resume(volume: Path, steps: str) -> subprocess.CompletedProcess:
    done = _train(volume, STEPS=steps)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done


@pytest.mark.drill  # a kill and a restart on a FUSE volume: about 11 s
def test_a_torn_manifest_version_and_progress_file_are_passed_over(tmp_path: Path) -> None:
    """A writer killed mid-write publishes a prefix: the next start reads the newest whole
    version and progress.csv up to its last whole row, and continues (never exit 7)."""
    with fuse_volume(tmp_path, object_store=()) as volume:
        _resume(volume.mountpoint, "400")
        run = volume.backing / "job"
        manifest = load_manifest(run)
        newest = object_store.versions(run)[0]
        text = newest[2].read_text()
        torn = run / object_store.version_name(newest[0], newest[1] + 1)
        torn.write_text(text[: len(text) // 2])
        rows = (run / "progress.csv").read_text()
        (run / "progress.csv").write_text(rows[: rows.rindex("\n", 0, len(rows) - 1) + 5])
        assert load_manifest(run) == manifest
        done = _resume(volume.mountpoint, "800")
        itr = max(e["itr"] for e in manifest["snapshots"])
        assert f"warm start from {volume.mountpoint / 'job' / f'itr_{itr}.pkl'} (itr {itr}:" \
            in done.stdout
        lines = (run / "progress.csv").read_text().splitlines()
        assert [int(line.split(",")[0]) for line in lines[1:]] == [49, 149, 199], lines


@pytest.mark.drill  # two holders in turn on a FUSE volume: about 16 s
def test_a_late_write_under_a_lower_holder_number_is_ignored(tmp_path: Path) -> None:
    """A stalled old holder that writes after the run was taken over (its manifest version, a
    snapshot with more training) is fenced off: the run's newest holder's records win."""
    with fuse_volume(tmp_path, object_store=()) as volume:
        _resume(volume.mountpoint, "400")
        _resume(volume.mountpoint, "800")  # a second holder
        run = volume.backing / "job"
        manifest = load_manifest(run)
        assert manifest["holder"] == 2
        itr = max(e["itr"] for e in manifest["snapshots"])
        late = torch.load(run / f"itr_{itr}.pkl", weights_only=True)
        late["itr"], late["cum_steps"] = 5000, 20000
        torch.save(late, run / "itr_5000.pkl")
        stale = json.loads(json.dumps(manifest)) | {"holder": 1, "version": 999}
        stale["snapshots"].append({"file": "itr_5000.pkl", "itr": 5000, "cum_steps": 20000,
                                   "holder": 1, "written": "late", "sha256": hashlib.sha256(
                                       (run / "itr_5000.pkl").read_bytes()).hexdigest()})
        object_store.write_manifest(run, stale)
        assert load_manifest(run) == manifest
        done = _resume(volume.mountpoint, "1200")
        assert f"warm start from {volume.mountpoint / 'job' / f'itr_{itr}.pkl'} (itr {itr}:" \
            in done.stdout
        assert load_manifest(run)["holder"] == 3


@pytest.mark.parametrize("wanted", ["rename", "object"])
def test_write_mode_forced_where_the_volume_cannot(tmp_path: Path, wanted: str) -> None:
    """WRITE_MODE=rename on a volume without rename, or object without overwrite: one line."""
    options = () if wanted == "rename" else ("--no-overwrite",)
    with fuse_volume(tmp_path, object_store=options) as volume:
        done = _train(volume.mountpoint, WRITE_MODE=wanted)
        assert done.returncode == 4 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert f"WRITE_MODE={wanted} but this volume cannot" in done.stderr
        assert list(volume.backing.iterdir()) == []


@pytest.mark.drill  # a run keeping few snapshots on a FUSE volume: about 6 s
def test_pruning_on_a_volume_without_delete_is_said_once(tmp_path: Path) -> None:
    """KEEP_SNAPSHOTS, old manifest versions and old itr_N.pkl on Mountpoint without
    --allow-delete: one log line, the files kept, the run trains to its end."""
    with fuse_volume(tmp_path, object_store=("--no-delete",)) as volume:
        done = _train(volume.mountpoint, SNAPSHOT_MODE="all", LOG_EVERY="100",
                      KEEP_SNAPSHOTS="1")
        assert done.returncode == 0, done.stdout + done.stderr
        said = [line for line in done.stdout.splitlines() if "does not delete files" in line]
        assert len(said) == 1 and "--allow-delete" in said[0], done.stdout
        run = volume.backing / "job"
        assert sorted(p.name for p in run.glob("itr_*.pkl")) == [
            "itr_24.pkl", "itr_49.pkl", "itr_74.pkl", "itr_99.pkl"]
        assert len(object_store.versions(run)) > object_store.VERSIONS_KEPT


@pytest.mark.drill  # waits out a lease time: about 13 s
def test_a_torn_lease_is_an_unknown_holder_until_a_lease_time_passes(tmp_path: Path) -> None:
    """The lease is replaced in place on an object store, so a kill can leave it torn: a start
    waits for it as for a live holder (exit 5, naming it), and takes the run once the file has
    gone unrewritten for a whole lease time, under a holder number above the records'."""
    with fuse_volume(tmp_path, object_store=()) as volume:
        _resume(volume.mountpoint, "400")
        run = volume.backing / "job"
        lease = run / ".warmstart.lease"
        text = lease.read_text()
        lease.write_text(text[: len(text) // 2])
        waited = _train(volume.mountpoint, STEPS="800", LOCK_WAIT="0")
        assert waited.returncode == 5, waited.stdout + waited.stderr
        assert "unknown (a torn lease file)" in waited.stderr
        assert len(waited.stderr.strip().splitlines()) == 1
        old = lease.stat().st_mtime - 3600  # written an hour ago: no holder renews it
        os.utime(lease, (old, old))
        _resume(volume.mountpoint, "800")
        assert load_manifest(run)["holder"] == 2


@pytest.mark.drill  # a run, then a restart on a changed FUSE volume: about 8 s
def test_a_refused_volume_leaves_a_resumed_run_as_it_was(tmp_path: Path) -> None:
    """A run begun on a disk, resumed through a mount that can neither rename nor overwrite:
    one line, exit 4, and not a byte of the run changed (no status written, no lease)."""
    backing = tmp_path / "disk"
    backing.mkdir()
    _resume(backing, "400")
    run = backing / "job"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with fuse_volume(tmp_path, backing=backing, object_store=("--no-overwrite",)) as volume:
        done = _train(volume.mountpoint, STEPS="800")
        assert done.returncode == 4 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert sorted(p.name for p in backing.iterdir()) == ["job"]
