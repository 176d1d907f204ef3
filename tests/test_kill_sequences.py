"""A run's record survives any sequence of kills (docs/volumes.md).

The real `warmstart train` runs on a FUSE test volume (tests/fusefs.py) that holds a chosen
step of a snapshot write once it is done; the test sends SIGKILL to the trainer's process group
there, so the kill lands right after that step and before the next, then lets the step return.
A snapshot write is 21 steps (``SNAPSHOT_WRITE``): the manifest naming the write in progress,
params.pkl, the manifest listing it, each made as temp file, write, fsync, rename and fsync of
the folder, each manifest.json after a write-once version of it (create, write, and the deletion
of an older one). Kills land in sequence: the first in a write that replaces an earlier snapshot,
each next one in the restarted trainer's first write: every step after a clean write and after a
kill, or with KILL_DRILL=all every step after every step (all 441 ordered pairs), on a volume
that renames as a local disk does and on one whose
renames of big files return seconds after they completed (s3fs). After each kill the next start
must continue the run from the newest intact snapshot, say which, and never be locked out.

On a volume without rename (``--object-store``, as Mountpoint for S3) the run is written in
object mode, a snapshot write being 19 steps (``OBJECT_SNAPSHOT_WRITE``): a manifest version
naming the write-once itr_N.pkl, the file, the commit version, params.pkl replaced in place, the
earlier snapshot's itr_N.pkl deleted, a last version; each version's older one deleted after it.
A kill there leaves what the object store publishes: a killed writer's partial file.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import FILES_ONLY_RUN
from fuse_volume import Volume, fuse_volume
from warmstart.checkpoint import object_store
from warmstart.checkpoint.manifest import load_manifest

# A log point (a progress row, then a snapshot) every 10 iterations; no updates.
SETTINGS = FILES_ONLY_RUN | {"STEPS": "100000", "RUN_NAME": "job", "LOG_EVERY": "40"}
SLOW_RENAME_S = 1.5
"""About s3fs's: its rename of a 58 MB snapshot is a server-side copy of about 1.4 s."""


def _write(name: str, k: int) -> list[tuple[str, str, int]]:
    """The steps of one atomic file write (checkpoint/atomic.py), the ``k``-th of its name."""
    temp = f".{name}.tmp-"
    return [("create", temp, k), ("write", temp, k), ("fsync", temp, k),
            ("rename", f"{temp}>{name}", k)]


def _version(k: int) -> list[tuple[str, str, int]]:
    """The steps of the ``k``-th manifest version of a write (``object_store.write_manifest``:
    a new file, no rename), and of the deletion of the version two before it."""
    return [("create", "manifest.v.json", k), ("write", "manifest.v.json", k),
            ("unlink", "manifest.v.json", k)]


SNAPSHOT_WRITE = (_version(1) + _write("manifest.json", 1) + [("fsyncdir", "job", 1)]
                  + _write("params.pkl", 1) + [("fsyncdir", "job", 2)]
                  + _version(2) + _write("manifest.json", 2) + [("fsyncdir", "job", 3)])
"""The steps of a snapshot write in SNAPSHOT_MODE=last, as (operation, file, which one of that
operation on that file since the write began); steps 13 to 21 follow params.pkl's rename."""
PARAMS_LANDED = SNAPSHOT_WRITE.index(("rename", ".params.pkl.tmp->params.pkl", 1))
ANCHOR = ".progress.csv.tmp-"
"""A log point writes its progress row, then the snapshot: the n-th snapshot write of a
process follows its n-th progress.csv rename."""


def _put(name: str, k: int, *, new: bool = True) -> list[tuple[str, str, int]]:
    """The steps of one object-store write (checkpoint/object_store.py), with the deletion of
    the version before when ``name`` is a manifest version."""
    steps = [("create" if new else "truncate", name, k), ("write", name, k), ("publish", name, k)]
    return steps + ([("unlink", name, k)] if name == "manifest.v.json" else [])


OBJECT_SNAPSHOT_WRITE = (_put("manifest.v.json", 1) + _put("itr_N.pkl", 1)
                         + _put("manifest.v.json", 2) + _put("params.pkl", 1, new=False)
                         + [("unlink", "itr_N.pkl", 1)] + _put("manifest.v.json", 3))
OBJECT_ANCHOR = "progress.csv"
"""On an object store a log point publishes progress.csv, then writes the snapshot."""


def every_pair(n: int) -> list[int]:
    """A sequence of 0..n-1 in which each ordered pair (a, b), a == b included, follows once:
    a de Bruijn sequence of order 2, n * n + 1 long."""
    a = [0] * 3
    cycle: list[int] = []

    def db(t: int, p: int) -> None:
        if t > 2:
            if 2 % p == 0:
                cycle.extend(a[1:p + 1])
            return
        a[t] = a[t - p]
        db(t + 1, p)
        for j in range(a[t - p] + 1, n):
            a[t] = j
            db(t + 1, t)

    db(1, 1)
    return cycle + cycle[:1]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _after_kill(run: Path) -> tuple[int, str | None]:
    """Check the folder a kill left; returns the itr of its newest intact snapshot (the one the
    next start must continue from) and the line that start must say about the interrupted
    write, if the manifest names one."""
    for path in run.glob("*.pkl"):  # every visible snapshot loads
        torch.load(path, weights_only=True)
    newest = torch.load(run / "params.pkl", weights_only=True)["itr"]
    manifest = load_manifest(run)  # a kill between a version and manifest.json: the version
    assert manifest is not None
    writing = manifest.get("writing")
    if writing is None:
        return newest, None
    landed = _sha256(run / "params.pkl") == writing["sha256"]
    return newest, (f"the previous process was stopped while writing the snapshot of itr "
                    f"{writing.get('itr')} " + ("after params.pkl landed" if landed
                                            else "before params.pkl landed"))


def _check_continued(output: str, snapshot: Path, itr: int, settled: str | None) -> None:
    """A restart continued the run from ``snapshot`` of ``itr`` and said so (and ``settled``)."""
    assert "Traceback" not in output, output
    assert f"warm start from {snapshot} (itr {itr}: " in output, output
    if settled is not None:
        assert settled in output, output


def _stop_after(volume: Volume, log: Path, anchor: str, step: tuple[str, str, int]) -> Path:
    """One more start: held at ``step`` of its first snapshot write, then SIGTERM ends it with
    a final snapshot (exit 143); returns the run folder."""
    volume.command(f"pause {anchor} 1 {' '.join(map(str, step))}")
    trainer = volume.start(log, SETTINGS)
    assert volume.next_line(trainer) is not None, log.read_text()
    os.killpg(trainer.pid, signal.SIGTERM)
    volume.command("go")
    assert trainer.wait() == 143, log.read_text()
    return volume.backing / "job"


def _end_cleanly(volume: Volume, log: Path) -> None:
    """``_stop_after`` its first snapshot write: the manifest lists params.pkl as it is."""
    run = _stop_after(volume, log, ANCHOR, SNAPSHOT_WRITE[-1])
    manifest = json.loads((run / "manifest.json").read_text())
    assert "writing" not in manifest and manifest["status"] == "stopped"
    listed = {e["file"]: e["sha256"] for e in manifest["snapshots"]}
    assert listed == {"params.pkl": _sha256(run / "params.pkl")}


def _after_object_kill(run: Path) -> tuple[int, str | None]:
    """``_after_kill`` on an object store: every snapshot the newest manifest version commits
    is intact; the next start continues from the newest, said as in rename mode."""
    manifest = load_manifest(run)
    assert manifest is not None
    committed = object_store.committed(run, manifest)
    writing = manifest.get("writing")
    itrs = []
    for entry in manifest["snapshots"]:
        if (entry["file"] in committed and entry["file"].startswith("itr_")
                and (run / entry["file"]).exists()):  # listed until the version after deletion
            assert _sha256(run / entry["file"]) == entry["sha256"]
            itrs.append(entry["itr"])
    if writing is not None and writing["files"][0] in committed - {
            e["file"] for e in manifest["snapshots"]}:
        itrs.append(writing["itr"])  # landed whole before the commit: the next start's
    newest = max(itrs)
    assert torch.load(run / f"itr_{newest}.pkl", weights_only=True)["itr"] == newest
    if writing is None:
        return newest, None
    name = writing["files"][0]
    landed = object_store.holds(run / name, writing["sha256"])
    return newest, (f"the previous process was stopped while writing the snapshot of itr "
                    f"{writing['itr']} {'after' if landed else 'before'} {name} landed")


def _end_object_cleanly(volume: Volume, log: Path) -> None:
    """``_end_cleanly`` on an object store: the manifest names no write in progress, and
    params.pkl is the newest committed itr_N.pkl's copy."""
    run = _stop_after(volume, log, OBJECT_ANCHOR, OBJECT_SNAPSHOT_WRITE[2])
    manifest = load_manifest(run)
    assert manifest is not None and "writing" not in manifest
    assert manifest["status"] == "stopped" and manifest["write_mode"] == "object"
    newest = max(manifest["snapshots"], key=lambda e: e["itr"])
    assert _sha256(run / "params.pkl") == _sha256(run / f"itr_{newest['itr']}.pkl") \
        == newest["sha256"]


@dataclass(frozen=True)
class Writes:
    """How a snapshot write goes on one kind of volume, and what a kill there leaves."""

    steps: list[tuple[str, str, int]]
    anchor: str  # the n-th snapshot write of a process follows its n-th write of this file
    after_kill: Callable[[Path], tuple[int, str | None]]
    resumed_from: Callable[[int], str]  # the file a restart continues from, by its itr
    end_cleanly: Callable[[Volume, Path], None]
    mount: dict[str, Any]


RENAME = Writes(SNAPSHOT_WRITE, ANCHOR, _after_kill, lambda _: "params.pkl", _end_cleanly, {})
OBJECT = Writes(OBJECT_SNAPSHOT_WRITE, OBJECT_ANCHOR, _after_object_kill,
                lambda itr: f"itr_{itr}.pkl", _end_object_cleanly, {"object_store": ()})


def _kill_sequence(tmp_path: Path, order: list[int], slow_rename: float = 0.0,
                   writes: Writes = RENAME) -> None:
    with fuse_volume(tmp_path, slow_rename=slow_rename, **writes.mount) as volume:
        run, seen = volume.backing / "job", volume.mountpoint / "job"
        expected: tuple[int, str | None] | None = None
        for i, index in enumerate(order):
            # the first kill in the first process's second write: it replaces a snapshot
            output = volume.kill_at(writes.steps[index], anchor=writes.anchor,
                                    occurrence=2 if i == 0 else 1, settings=SETTINGS,
                                    log=tmp_path / f"trainer-{i}.log")
            if expected is not None:
                _check_continued(output, seen / writes.resumed_from(expected[0]), *expected)
            assert sorted(p.name for p in volume.backing.iterdir()) == ["job"]
            expected = writes.after_kill(run)
        writes.end_cleanly(volume, tmp_path / "last.log")
        _check_continued((tmp_path / "last.log").read_text(),
                         seen / writes.resumed_from(expected[0]), *expected)


@pytest.mark.drill  # two kills and three starts: about 13 s
def test_the_issue_25_sequence_leaves_a_run_that_continues(tmp_path: Path) -> None:
    """Kill 1 right after params.pkl's rename, before the manifest lists it; kill 2 while the
    restart writes its next params.pkl: the next start continues from the first kill's
    snapshot (it used to exit 7, "not a snapshot this run wrote")."""
    write_params = SNAPSHOT_WRITE.index(("write", ".params.pkl.tmp-", 1))
    _kill_sequence(tmp_path, [PARAMS_LANDED, write_params], slow_rename=0.0)


def drill_sequence() -> list[int]:
    """The drill's kills: with KILL_DRILL=all every ordered pair of steps (442 kills, 20 times
    the default sequence's); otherwise each step once after a clean write and once
    after a kill (22 kills), which is what `make drills` and CI run."""
    n = len(SNAPSHOT_WRITE)
    return every_pair(n) if os.environ.get("KILL_DRILL") == "all" else [*range(n), 0]


@pytest.mark.drill
@pytest.mark.parametrize("slow_rename", [0.0, SLOW_RENAME_S], ids=["local", "slow-rename"])
def test_kills_in_sequence_at_snapshot_write_steps(tmp_path: Path, slow_rename: float) -> None:
    _kill_sequence(tmp_path, drill_sequence(), slow_rename)


@pytest.mark.drill  # three kills and four starts on a FUSE volume: about 18 s
def test_kills_at_object_store_write_steps_leave_a_run_that_continues(
        tmp_path: Path) -> None:
    """Three kills in sequence, each in the previous one's restart, at the object-mode steps a
    kill leaves the most behind: itr_N.pkl published but not yet committed, params.pkl torn
    (the store publishes the part written), a manifest version torn. The run always continues
    from its newest intact itr_N.pkl and says which. Every step, and every pair, is the drill's
    (``test_kills_in_sequence_at_object_store_write_steps``)."""
    steps = [("publish", "itr_N.pkl", 1), ("write", "params.pkl", 1),
             ("write", "manifest.v.json", 1)]
    _kill_sequence(tmp_path, [OBJECT_SNAPSHOT_WRITE.index(step) for step in steps],
                   writes=OBJECT)


@pytest.mark.drill
def test_kills_in_sequence_at_object_store_write_steps(tmp_path: Path) -> None:
    """With KILL_DRILL=all every ordered pair of the 19 steps (362 kills); otherwise each
    step after a clean write too."""
    n = len(OBJECT_SNAPSHOT_WRITE)
    _kill_sequence(tmp_path, every_pair(n) if os.environ.get("KILL_DRILL") == "all"
                   else [*range(n), 0], writes=OBJECT)
