"""A run folder on the checkpoint volume: rlpyt's layout plus our manifest.

``CKPT_DIR/<run>/`` holds what rlpyt's logger writes (``params.pkl`` or ``itr_N.pkl``,
``progress.csv``, ``params.json``) and ``manifest.json``: the parent snapshot and its sha256,
the config, the job's step budget, the software versions and one entry per snapshot written.
Every file is replaced atomically, so a job killed at any instant leaves a loadable folder.
A trainer writes only into a run whose manifest it can read, and replaces a snapshot file only
when the manifest vouches for the bytes on disk (an entry's sha256, or the write in progress
when a kill came), so a file of another lineage is never overwritten.

A kill can land at any step of a snapshot write, and again at any step of the next process's
first write. So the ``writing`` entry (the files, sha256, itr and cum_steps of the write in
progress) is settled before anything else is written (``RunDir.claim``): each of its files
that landed with that sha256 gets its snapshot entry, and the hash of one that did not land
stays vouched for under ``interrupted`` (a rename a network volume completes after its caller
is gone lands late). A run's own interrupted writes never lock it out.

On a volume without rename the run is written in object mode (``object_store``, chosen at the
start by ``capabilities``): write-once itr_N.pkl and manifest versions instead of replacements.
In rename mode each ``manifest.json`` follows a write-once version of it, so that a late rename
by a stalled old holder never stands as the run's record (``manifest.newest_record``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .. import provenance
from ..config import EXAMPLE_1, Config, SamplerShape
from ..errors import (
    RunLockedError,
    RunRecordError,
    TrainingDivergedError,
    UserError,
    VolumeUnavailableError,
)
from . import atomic, lock, object_store, resume_state, safe_read
from . import snapshot as snap
from .counters import Budget
from .manifest import MANIFEST, MANIFEST_FORMAT, fields_problem, highest_holder, load_manifest
from .records import PARAMS_JSON
from .rows import PROGRESS, read_progress, rows_problem
from .volume_errors import volume_error
from .volume_io import VOLUME

_RUN_N = re.compile(r"^run_(\d+)$")
_RUN_FILE = re.compile(r"^(params\.pkl|itr_\d+\.pkl|progress\.csv|params\.json|"
                       r"resume-itr_\d+\.npz)$")
"""What a run folder holds besides its manifest: files a trainer must not write over unless
the folder's manifest says the run is its own."""

INTERRUPTED_KEPT = 4
"""Interrupted writes whose files did not land, still vouched for (the newest few)."""

T = TypeVar("T")

StateFn = Callable[[], dict[str, Any]]
"""Returns ``model``, ``target`` and ``optimizer`` state dicts on the CPU, when a snapshot is due,
and with RESUME_STATE=full a ``resume`` ResumePayload."""


def _identity(info: os.stat_result) -> tuple[int, ...]:
    """What tells one version of a file from another without reading it."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def next_run_name(ckpt_dir: Path) -> str:
    """``run_<N>`` one past the highest existing, as rlpyt numbers its run_ID folders."""
    taken = [int(m.group(1)) for p in ckpt_dir.iterdir() if (m := _RUN_N.match(p.name))]
    return f"run_{max(taken, default=-1) + 1}"


def latest_run_dir(ckpt_dir: Path) -> Path | None:
    """The highest-numbered ``run_<N>`` folder: the run a plain restart would continue."""
    numbered = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _RUN_N.match(p.name))]
    return max(numbered)[1] if numbered else None


def _parent_record(parent: snap.Snapshot) -> dict[str, Any]:
    """The manifest's ``parent``: where the run began. An AsyncRl parent's own counters go
    with it (``asynchronous``): the run's snapshots keep that runner's format."""
    record = {"path": str(parent.path), "sha256": parent.sha256, "itr": parent.itr,
              "cum_steps": parent.cum_steps, "lr": parent.lr}
    if parent.asynchronous is not None:
        record["asynchronous"] = {"itr": parent.asynchronous.opt_itr,
                                  "sampler_itr": parent.asynchronous.sampler_itr,
                                  "cum_updates": parent.asynchronous.cum_updates,
                                  "optimizer_updates": parent.updates}
    return record


class RunDir:
    """Writes one run's snapshots, progress rows and manifest; nothing else touches the folder.

    A RunDir holds the run's lock and lease (``lock``): no other trainer writes the folder
    meanwhile, and before each write it checks that it still does (a holder whose lease lapsed
    stops, exit 5). The manifest and each snapshot entry carry the writer's holder number."""

    def __init__(self, path: Path, config: Config, manifest: dict[str, Any],
                 held: lock.RunLock, *, log: Callable[[str], None] = print) -> None:
        self._lock = held  # held for the life of the process (the kernel drops it on exit)
        self._log = log
        self.path = path
        self.config = config
        self.manifest = manifest
        self._gap_itrs = max(1, config.snapshot_every // self.budget.shape.steps_per_itr)
        self.protected: Path | None = None  # the snapshot this process started from
        self._written: dict[str, tuple[int, ...]] = {}  # file -> identity when this process
        # wrote or checked it (``_check_own``); the write mode the run was last written in,
        # until the start's probe of the volume says which this process uses (``use``)
        self.write_mode: str = manifest.get("write_mode") or "rename"
        # so that even recording a failure before the probe (``fail``) takes the lease as
        # this mode writes it (in place on an object store, where a rename is ENOSYS)
        held.use(in_place=self.write_mode == "object", floor=highest_holder(manifest))
        self._deleter = object_store.Deleter(log)
        try:
            self._rows: list[dict[str, Any]] = read_progress(
                self.path, whole_rows=self.write_mode == "object")
            problem = rows_problem(self._rows)
        except (OSError, csv.Error, UnicodeDecodeError) as err:
            text = (err.strerror if isinstance(err, OSError) else None) or str(err)
            problem = text.splitlines()[0] if text else type(err).__name__
        if problem is not None:
            held.release()
            raise RunRecordError(
                f"{self.path / PROGRESS}: not a progress.csv this trainer can read ({problem:.80});"
                " move it aside to resume this run (its log then starts again from here).")

    @property
    def name(self) -> str:
        return self.path.name

    def use(self, write_mode: str) -> None:
        """Write the run in ``write_mode`` (``capabilities``; in object mode the lease too is
        replaced in place), under a holder number above every one the run's records carry."""
        self.write_mode = write_mode
        self._lock.use(in_place=write_mode == "object", floor=highest_holder(self.manifest))

    @property
    def budget(self) -> Budget:
        b = self.manifest["budget"]
        # a manifest from before shapes were recorded is example 1's
        shape = SamplerShape(b.get("batch_T", EXAMPLE_1.batch_T), b.get("batch_B", EXAMPLE_1.batch_B))
        return Budget(b["start_itr"], b["target_itr"], b["eps_decay_start_itr"], shape)

    @property
    def finished(self) -> bool:
        return self.manifest["status"] == "finished"

    @classmethod
    def create(cls, path: Path, config: Config, *, engine: str, n_actions: int,
               parent: snap.Snapshot | None, budget: Budget, write_mode: str = "rename",
               log: Callable[[str], None] = print) -> RunDir:
        """Make the folder, lock it and write its manifest and params.json before any training.

        Without RUN_NAME the ``run_N`` folder is made exclusively: when another trainer made it
        first, this one takes the next number, so two starts never share a folder.
        """
        while True:
            try:
                path.mkdir(parents=False, exist_ok=config.run_name is not None)
                break
            except FileExistsError:
                if config.run_name is not None:  # RUN_NAME names a file, not a folder
                    raise RunRecordError(f"RUN_NAME={config.run_name}: {path} is not a folder; "
                                         "use another RUN_NAME.") from None
                path = path.with_name(next_run_name(path.parent))
            except OSError as err:
                raise volume_error(path, err) from None
        held = lock.acquire(path, wait_s=config.lock_wait, log=log)
        held.contested = config.run_name is not None  # a run_N folder was made ours alone
        try:
            found = load_manifest(path)
            foreign = sorted(p.name for p in path.iterdir() if _RUN_FILE.match(p.name))
        except BaseException:
            held.release()
            raise
        if found is not None:  # RUN_NAME: another trainer began it while we waited
            held.release()
            raise RunLockedError(f"{path} was started by another trainer while this one waited "
                                 "for it; retry to resume it.")
        if foreign:  # RUN_NAME names a folder of files that no manifest says are ours
            held.release()
            raise RunRecordError(
                f"RUN_NAME={config.run_name}: {path} holds {', '.join(foreign[:3])} but no "
                f"{MANIFEST}: not a run this trainer started, and a trainer never writes into "
                "another run; use another RUN_NAME (INIT_SNAPSHOT can name its snapshot).")
        held.use(in_place=write_mode == "object", floor=0)
        held.claim()
        manifest = {
            "format": MANIFEST_FORMAT,
            "run": path.name,
            "status": "running",
            "created": _now(),
            "engine": engine,
            "game": config.game,
            "n_actions": n_actions,
            "dueling": config.dueling,
            "seed": config.seed,
            "parent": None if parent is None else _parent_record(parent),
            "budget": {"start_itr": budget.start_itr, "target_itr": budget.target_itr,
                       "target_cum_steps": budget.target_cum_steps,
                       "eps_decay_start_itr": budget.eps_decay_start_itr,
                       "batch_T": budget.shape.batch_T, "batch_B": budget.shape.batch_B},
            "config": config.as_dict(),
            "versions": provenance.versions(),
            "snapshots": [],
            "write_mode": write_mode,
        }
        run = cls(path, config, manifest, held, log=log)
        run._write_manifest()
        run.put_record(PARAMS_JSON, (json.dumps(run._rlpyt_params(), indent=2) + "\n").encode())
        return run

    @classmethod
    def open(cls, path: Path, config: Config, *,
             log: Callable[[str], None] = print) -> RunDir | None:
        """Reopen a run a previous process of this job started, or None if there is none.

        Takes the run's lock first, waiting up to LOCK_WAIT for a trainer still writing it,
        and reads the manifest as that trainer left it.
        """
        if load_manifest(path) is None:
            return None
        held = lock.acquire(path, wait_s=config.lock_wait, log=log)
        try:
            manifest = load_manifest(path)
        except BaseException:
            held.release()
            raise
        if manifest is None:
            held.release()
            return None
        return cls(path, config, manifest, held, log=log)

    def claim(self) -> None:
        """Commit to writing this run: its lock file names this process from now on, and a
        snapshot write an earlier process left unfinished is settled (``_settle_writing``)."""
        self._lock.claim()
        self._settle_writing()

    def _holds(self, name: str, sha256: str) -> bool:
        """Whether the run folder's ``name`` is a regular file with exactly these bytes."""
        return object_store.holds(self.path / name, sha256)

    def _settle_writing(self) -> None:
        """Record how the snapshot write an earlier process was killed in ended, before this
        process writes anything: a file that landed with the sha256 being written gets its
        snapshot entry (what the final manifest write would have said); a write that did not
        land leaves the previous snapshot as the run's newest and its hash vouched for under
        ``interrupted``. One log line says which."""
        writing = self.manifest.get("writing")
        if writing is None:
            return
        digest = writing["sha256"]
        landed = [name for name in writing["files"] if self._holds(name, digest)]
        missed = [name for name in writing["files"] if name not in landed]
        entries = [e for e in self.manifest["snapshots"] if e["file"] not in landed]
        itr, cum_steps = writing.get("itr"), writing.get("cum_steps")
        for name in landed:
            if itr is None or cum_steps is None:  # a manifest from before they were recorded
                counters = snap.read_training(self.path / name)
                itr, cum_steps = counters.itr, counters.cum_steps
            entries.append({"file": name, "itr": itr, "cum_steps": cum_steps, "sha256": digest,
                            "written": writing.get("started", _now())}
                           | {k: writing[k] for k in ("resume_state", "resume_state_bytes",
                                                      "holder", "stage") if k in writing})
        self.manifest["snapshots"] = entries
        if missed:
            kept = self.manifest.get("interrupted") or []
            self.manifest["interrupted"] = (kept + [{"files": missed, "sha256": digest}])[
                -INTERRUPTED_KEPT:]
        del self.manifest["writing"]
        self._write_manifest()
        what = f"the snapshot of itr {itr}" if itr is not None else "a snapshot"
        if landed:
            self._log(f"run {self.name}: the previous process was stopped while writing {what}"
                      f" after {', '.join(landed)} landed; recorded in {MANIFEST}"
                      + (f" ({', '.join(missed)} had not landed)" if missed else ""))
        else:
            self._log(f"run {self.name}: the previous process was stopped while writing {what}"
                      f" before {', '.join(missed)} landed; the run's previous snapshot stands")

    def release(self) -> None:
        """Give up the run's lock: this process will not write the run after all."""
        self._lock.release()

    def _rlpyt_params(self) -> dict[str, Any]:
        """params.json as rlpyt's logger writes it: the logged config plus name and run_ID."""
        c = self.config
        match = _RUN_N.match(self.name)
        return {
            "game": c.game,
            "algo": {"discount": c.discount, "batch_size": c.batch_size,
                     "min_steps_learn": c.min_steps_learn, "replay_size": c.replay_size,
                     "replay_ratio": c.replay_ratio,
                     "target_update_interval": c.target_update_interval,
                     "n_step_return": c.n_step_return, "double_dqn": c.double_dqn,
                     "prioritized_replay": c.prioritized_replay, "learning_rate": c.lr,
                     "eps_steps": c.eps_steps, "clip_grad_norm": c.clip_grad_norm},
            "agent": {"dueling": c.dueling, "eps_final": c.eps_final},
            "sampler": {"batch_T": self.budget.shape.batch_T,
                        "batch_B": self.budget.shape.batch_B},
            "n_steps": c.steps,
            "runner": "warmstart",
            "name": f"dqn_{c.game}",
            "run_ID": int(match.group(1)) if match else self.name,
        }

    def _on_volume(self, op: str, path: Path, fn: Callable[[], T]) -> T:
        """``fn`` on the volume's worker (``volume_io``): a stall is said, and once training
        runs a transient failure is retried while this process's lease leaves time. ``fn``
        redoes its whole write each time."""
        return VOLUME.run(op, path, fn, time_left=self._lock.left)

    def _write_manifest(self) -> None:
        self._lock.check()
        self.manifest["holder"] = self._lock.holder
        self.manifest["updated"] = _now()
        self.manifest["version"] = (self.manifest.get("version") or 0) + 1
        self.manifest["write_mode"] = self.write_mode
        # A write-once version first, in both modes: ordered by holder number, it fences off a
        # late manifest.json from a stalled old holder (a rename s3fs completes after its
        # caller is gone), which would otherwise stand as the run's record.
        record = dict(self.manifest)
        path = self.path / object_store.version_name(record["holder"], record["version"])
        written = self._on_volume("write", path,
                                  lambda: object_store.write_manifest(self.path, record))
        self._on_volume("prune", self.path, lambda: self._deleter.old_versions(
            self.path, written, holders_last=self.write_mode == "object"))
        if self.write_mode == "rename":
            text = json.dumps(self.manifest, indent=2) + "\n"
            self._on_volume("write", self.path / MANIFEST,
                            lambda: atomic.write_text(self.path / MANIFEST, text))

    def put_record(self, name: str, data: bytes) -> None:
        """Replace a record that is not a snapshot (params.json, progress.csv, TensorBoard's
        event files): atomically, or in object mode in place (a torn one is tolerated by its
        reader); through the volume's worker, retried as every write."""
        self._lock.check()
        path = self.path / name
        if self.write_mode == "object":
            self._on_volume("write", path, lambda: object_store.put(path, data, replace=True))
        else:
            self._on_volume("write", path, lambda: atomic.write_bytes(path, data))

    def snapshot_files(self, itr: int, *, final: bool) -> list[str]:
        """Which files a snapshot at ``itr`` goes to under SNAPSHOT_MODE (rlpyt's modes).

        In the gap modes the final snapshot always gets its itr file, so the end of a job is
        never only in memory.
        """
        mode = self.config.snapshot_mode
        files = []
        if mode in ("last", "last+gap"):
            files.append("params.pkl")
        if mode == "all" or (mode in ("gap", "last+gap")
                             and (final or (itr + 1) % self._gap_itrs == 0)):
            files.append(f"itr_{itr}.pkl")
        return files

    def save_snapshot(self, itr: int, state: StateFn, *, final: bool = False) -> float:
        """Write the snapshot for ``itr`` atomically; returns the seconds it took."""
        started = time.perf_counter()
        files = self.snapshot_files(itr, final=final)
        if not files:
            return 0.0
        parts = state()
        bad = snap.non_finite(model=parts["model"], target=parts["target"],
                              optimizer=parts["optimizer"])
        if bad is not None:
            raise TrainingDivergedError(
                f"training diverged: {bad} holds NaN or infinite values at itr {itr}; "
                f"snapshot not written, {self.path}'s last snapshot is the last finite one. "
                "Lower LR, or warm-start from another snapshot.")
        cum_steps = self.budget.cum_steps(itr)
        data = snap.to_bytes(itr=itr, cum_steps=cum_steps, model=parts["model"],
                             target=parts["target"], optimizer=parts["optimizer"],
                             asynchronous=self._asynchronous(itr, parts["optimizer"]))
        digest = hashlib.sha256(data).hexdigest()
        self._lock.check()
        for name in files:
            self._on_volume("check", self.path / name, lambda name=name: self._check_own(name))
        # The resume state goes first and older ones go last (see resume_state's docstring):
        # a kill in between never leaves the newest snapshot without its own resume state.
        resume = None
        if "resume" in parts:
            def write_resume() -> tuple[Path, int]:
                path = resume_state.write(self.path, itr=itr, cum_steps=cum_steps,
                                          params_sha256=digest, config=self.config,
                                          payload=parts["resume"],
                                          object_mode=self.write_mode == "object")
                return path, path.stat().st_size

            resume, resume_bytes = self._on_volume(
                "write", self.path / resume_state.file_name(itr), write_resume)
        else:
            self._prune_resume_states(keep=None)
        # The manifest names the files and sha256 being written before they land, so a kill
        # between a file and the manifest's final entry leaves a file the run can vouch for.
        self.manifest["writing"] = {"files": files, "sha256": digest, "itr": itr,
                                    "cum_steps": cum_steps, "started": _now(),
                                    "holder": self._lock.holder}
        if resume is not None:
            self.manifest["writing"] |= {"resume_state": resume.name,
                                         "resume_state_bytes": resume_bytes}
        if self.write_mode == "object":
            object_store.save_snapshot(self, files, data, self.manifest.pop("writing"))
            self._prune()
            self._prune_resume_states(keep=resume)
            return time.perf_counter() - started
        self._write_manifest()
        entries = [e for e in self.manifest["snapshots"] if e["file"] not in files]
        for name in files:
            self._lock.check()
            path = self.path / name

            def write_file(path: Path = path) -> tuple[int, ...]:
                atomic.write_bytes(path, data)
                return _identity(os.lstat(path))

            self._written[name] = self._on_volume("write", path, write_file)
            entries.append({"file": name, "itr": itr, "cum_steps": cum_steps,
                            "sha256": digest, "written": _now(), "holder": self._lock.holder})
            if resume is not None:
                entries[-1] |= {"resume_state": resume.name, "resume_state_bytes": resume_bytes}
        self.manifest["snapshots"] = entries
        del self.manifest["writing"]
        self._write_manifest()
        self._prune()
        self._prune_resume_states(keep=resume)
        return time.perf_counter() - started

    def _prune_resume_states(self, keep: Path | None) -> None:
        """Delete the resume states but ``keep`` through the volume's worker; in object mode
        through the Deleter: a volume without delete keeps them, said once, never an error."""
        delete = self._deleter.delete if self.write_mode == "object" else None
        self._on_volume("prune", self.path,
                        lambda: resume_state.prune(self.path, keep=keep, delete=delete))

    def listed_resume_states(self) -> dict[str, int] | None:
        """In a run last written in object mode, the resume states its manifest lists (its
        snapshots' and the write in progress's) by name, with their sizes: only those are
        whole (``resume_state.find``). None in rename mode, where every file is."""
        if self.write_mode != "object":
            return None
        records = [*self.manifest["snapshots"], self.manifest.get("writing") or {}]
        return {r["resume_state"]: r["resume_state_bytes"] for r in records
                if isinstance(r.get("resume_state"), str)
                and isinstance(r.get("resume_state_bytes"), int)}

    def _asynchronous(self, itr: int, optimizer: dict[str, Any]) -> snap.AsyncCounters | None:
        """The AsyncRl counters a snapshot of a run continuing an asynchronous lineage carries,
        so that it stays in the format of the runner that began it (None otherwise):
        ``sampler_itr`` is the run's ``itr``, ``cum_updates`` Adam's step (the lineage's
        updates: this run's counters are the lineage's real progress, never reset), and
        ``itr`` the parent's optimizer iterations plus one per update since (rlpyt's async
        DQN updates ``updates_per_sync`` = 1 times per optimizer iteration by default)."""
        parent = self.manifest["parent"] or {}
        began = parent.get("asynchronous")
        if not isinstance(began, dict):
            return None
        updates = snap.optimizer_updates(optimizer) or 0
        since = max(0, updates - int(began.get("optimizer_updates") or 0))
        return snap.AsyncCounters(opt_itr=int(began.get("itr") or 0) + since, sampler_itr=itr,
                                  cum_updates=updates)

    def wrote(self, name: str) -> None:
        """Note ``name`` as this process just wrote it: ``_check_own`` need not hash it again."""
        self._written[name] = _identity(os.lstat(self.path / name))

    def _check_own(self, name: str) -> None:
        """Refuse to replace ``name`` unless this run wrote it: the manifest lists it with the
        sha256 of the bytes on disk now (a file this process wrote or checked and that has not
        changed since is not hashed again). A new name is free."""
        path = self.path / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as err:
            raise volume_error(path, err) from None
        if self._written.get(name) == _identity(info):
            return
        vouched = {e["sha256"] for e in self.manifest["snapshots"] if e["file"] == name}
        for write in [self.manifest.get("writing"), *(self.manifest.get("interrupted") or [])]:
            if write is not None and name in write["files"]:  # a kill came before the entry
                vouched.add(write["sha256"])
                if self.write_mode == "object":  # what it published when killed: a prefix
                    self._written[name] = _identity(info)
                    return
        if self.write_mode == "object" and name in object_store.ever_listed(
                self.path, fields_problem):  # a fenced-off late write: the run's own
            self._written[name] = _identity(info)
            return
        if not vouched:
            why = "the run's manifest does not list it"
        else:
            try:
                digest = hashlib.sha256(safe_read.read_bytes(
                    path, limit=safe_read.SNAPSHOT_LIMIT, flags=os.O_NOFOLLOW)).hexdigest()
                why = None if digest in vouched else (
                    "its sha256 is not the one the run's manifest lists")
            except OSError as err:
                why = err.strerror or str(err)
        if why is not None:
            raise RunRecordError(
                f"{path}: not a snapshot this run wrote ({why}); a trainer replaces only its "
                f"own run's files: move the file or the folder {self.path} aside, or use "
                "another RUN_NAME.")
        self._written[name] = _identity(info)

    def _prune(self) -> None:
        """Apply KEEP_SNAPSHOTS to the itr_N.pkl files the manifest lists (never to a file this
        run did not write), after the new one is safe.

        The snapshot this process started from is never deleted (a restart may still need it),
        and the newest is always among the kept ones.
        """
        keep = self.config.keep_snapshots
        if not keep:
            return
        listed = {e["file"]: e["itr"] for e in self.manifest["snapshots"]
                  if e["file"].startswith("itr_") and snap.SNAPSHOT_NAME.match(e["file"])}
        numbered = [self.path / name for name in sorted(listed, key=listed.get, reverse=True)]
        doomed = [p for p in numbered[keep:] if p != self.protected]
        doomed = [p for p in doomed
                  if self._on_volume("delete", p, lambda p=p: self._deleter.delete(p))]
        if doomed:
            names = {p.name for p in doomed}
            self.manifest["snapshots"] = [e for e in self.manifest["snapshots"]
                                          if e["file"] not in names]
            self._write_manifest()

    def forget_rows_after(self, itr: int) -> None:
        """Drop progress rows past the snapshot a resume starts from: those iterations run
        again, and the counters they carry (completed trajectories) must not count twice."""
        self._rows = [r for r in self._rows if int(float(r["Diagnostics/Iteration"])) <= itr]

    @property
    def last_row(self) -> dict[str, Any] | None:
        return self._rows[-1] if self._rows else None

    @property
    def last_evaluated_cum_steps(self) -> int:
        """CumSteps of the newest progress row with an evaluation; the run's start without one.

        A restart picks up periodic evaluation from there, so an evaluation skipped or dropped
        for a signal is played at the next log point, as an uninterrupted run would have.
        """
        evaluated = [r for r in self._rows if float(r.get("Diagnostics/TrajsInEval") or 0) > 0]
        if evaluated:
            return int(float(evaluated[-1]["Diagnostics/CumSteps"]))
        return self.budget.cum_steps(self.budget.start_itr)

    def log_row(self, row: dict[str, Any]) -> None:
        """Append a progress.csv row (the whole file is rewritten atomically; it stays small)."""
        self._rows.append(row)
        columns: list[str] = []
        for r in self._rows:
            columns.extend(k for k in r if k not in columns)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._rows)
        self.put_record(PROGRESS, out.getvalue().encode())

    def record_start(self, info: dict[str, Any]) -> None:
        """Note what this process runs with beyond the config (threads, device, determinism,
        how it started): a manifest must name everything that decides the result. The run is
        running again, whatever an earlier start recorded (stopped, failed). From here the
        volume has passed the start checks: a failure is an outage to retry (``volume_io``)."""
        VOLUME.retry_from_now()
        self.manifest.setdefault("starts", []).append({"started": _now()} | info)
        self.manifest["status"] = "running"
        self.manifest.pop("error", None)
        self._write_manifest()

    def set_target(self, target_itr: int, *, steps: int) -> None:
        """Set the run's last iteration: at its creation, and when a re-run with a larger
        ``STEPS`` (the run's total from its start) extends it. ``targets`` keeps every one."""
        budget = self.manifest["budget"]
        if "targets" not in self.manifest:  # a manifest from before targets were listed
            self.manifest["targets"] = [] if budget["target_itr"] == target_itr else [
                {"steps": self.manifest["config"].get("STEPS"), "target_itr": budget["target_itr"],
                 "target_cum_steps": budget["target_cum_steps"], "set": self.manifest["created"]}]
        if target_itr > budget["target_itr"] and self.finished:
            self.manifest["status"] = "running"
        budget["target_itr"] = target_itr
        budget["target_cum_steps"] = self.budget.cum_steps(target_itr)
        self.manifest["targets"].append({"steps": steps, "target_itr": target_itr,
                                         "target_cum_steps": budget["target_cum_steps"],
                                         "set": _now()})
        self._write_manifest()

    def record_progress(self, progress: dict[str, Any]) -> None:
        """Note where the parent's lineage really stood (``start_progress``): its counters, or
        an estimate when rlpyt's warm start had reset them. Beside the snapshot, never in it,
        so rlpyt's snapshot layout stays exactly rlpyt's."""
        self.manifest["start_progress"] = progress
        self._write_manifest()

    def record_settings(self, taken: dict[str, Any]) -> None:
        """Note the settings this run took from its lineage's record (``recorded_settings``),
        the job having left them unset; ``config`` holds every value the run trains with."""
        self.manifest["recorded_settings"] = taken
        self._write_manifest()

    def mark(self, status: str) -> None:
        """Record how the run ended: ``finished`` (budget reached) or ``stopped`` (by a signal)."""
        self.manifest["status"] = status
        self.manifest.pop("error", None)
        self._write_manifest()

    def fail(self, err: Exception) -> str | None:
        """Record that this start failed, and why (status ``failed``, ``error`` the line the
        user saw; a bug's exception type and message), so ``report`` does not show the run as
        running. Best effort: on a full disk even this small write may fail; that is returned
        as a line for the log, never raised over the error that ended the run."""
        if self._lock.lost() is not None:  # the run may be another trainer's now
            return None
        self.manifest["status"] = "failed"
        self.manifest["error"] = (f"exit {err.exit_code}: {err}" if isinstance(err, UserError)
                                  else f"exit 1 (a bug): {type(err).__name__}: {err}")
        try:
            self._write_manifest()
        except UserError as also:
            return f"could not record the failure in {self.path / MANIFEST}: {also}"
        return None

    def check_own_files(self, from_itr: int) -> None:
        """Before this process writes anything: every snapshot file it may replace
        (params.pkl, and itr_N.pkl from ``from_itr`` on) is this run's own (``_check_own``),
        so a run it cannot continue stops (exit 7) with its manifest and rows untouched."""
        for name in sorted(os.listdir(self.path)):
            number = re.fullmatch(r"itr_(\d+)\.pkl", name)
            if name == "params.pkl" or (number and int(number.group(1)) >= from_itr):
                self._check_own(name)

    @contextlib.contextmanager
    def failing_records(self, log: Callable[[str], None]) -> Iterator[None]:
        """An error inside the block is recorded (``fail``) before it ends the job; not a
        RunRecordError (a run whose records are damaged or not its own is never written), a
        RunLockedError (another trainer holds the run: it is that trainer's to write) nor a
        VolumeUnavailableError (the volume just failed every retry of a write)."""
        try:
            yield
        except (RunRecordError, RunLockedError, VolumeUnavailableError):
            raise
        except Exception as err:
            problem = self.fail(err)
            if problem is not None:
                log(problem)
            raise
