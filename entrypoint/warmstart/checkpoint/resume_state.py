"""The resume state: what a snapshot leaves out, saved beside it so a restart is exact.

rlpyt's ``params.pkl`` holds weights and Adam's state only; continuing bit-exactly also needs
the replay buffer, every RNG, the emulator and the schedule counters. With
``RESUME_STATE=full`` each snapshot gets ``resume-itr_<itr>.npz`` next to it (never inside
it: rlpyt must still load ``params.pkl`` unchanged). The engine decides what goes in (a
``ResumePayload``: JSON-able ``meta`` and named numpy arrays); this module owns the file.

The file is a zip of ``.npy`` members (what ``np.savez`` writes, deflated: frames compress
well) plus ``meta.json``. It records the sha256 of the snapshot bytes it belongs to, and the
settings that shape training. Loading parses headers and JSON only: nothing is unpickled.

Crash consistency, with the order ``RunDir.save_snapshot`` uses: the resume state is written
(atomically, or in object mode under its own name before the manifest version that lists it
with its size) before the snapshot files, and older resume states are deleted only after the
new snapshot is in place. A kill at any moment leaves the newest snapshot with the resume
state whose recorded sha256 is its own; a stray newer resume state (the kill came before its
snapshot landed) matches nothing and is deleted at the next snapshot. A snapshot beside
resume states none of which is its own is a set someone mixed: refused, never guessed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import provenance
from ..config import Config
from ..errors import ConfigError, SnapshotError
from . import atomic, object_store, safe_read
from . import snapshot as snap
from .volume_errors import raise_if_outage

FORMAT = 1
PREFIX = "resume-itr_"
NAME = re.compile(rf"^{PREFIX}(\d+)\.npz$")
META = "meta.json"
COMPRESS_LEVEL = 3
"""zlib level 3: measured on Atari frames, ~5x faster than the default 6 for ~1.5x the size."""
_CHUNK = 64 << 20

EXACT_SETTINGS = ("GAME", "SEED", "LR", "BATCH_SIZE", "REPLAY_SIZE", "MIN_STEPS_LEARN",
                  "REPLAY_RATIO", "TARGET_UPDATE_INTERVAL", "N_STEP_RETURN", "DOUBLE_DQN",
                  "DUELING", "PRIORITIZED_REPLAY", "EPS_FINAL", "EPS_STEPS", "DISCOUNT",
                  "CLIP_GRAD_NORM")
"""Settings that shape the training computation: a resume is exact only if they are unchanged.
(Where files go and how often they are written are not here; the thread count, the device
and the library versions, which exactness also needs, are compared with a warning when the
engine restores the state.)"""


@dataclass
class ResumePayload:
    """What an engine saves: JSON-able ``meta`` and C-contiguous arrays (views are fine)."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]


def file_name(itr: int) -> str:
    return f"{PREFIX}{itr}.npz"


def _settings(config: Config) -> dict[str, Any]:
    values = config.as_dict()
    return {name: values[name] for name in EXACT_SETTINGS}


def write(run_path: Path, *, itr: int, cum_steps: int, params_sha256: str, config: Config,
          payload: ResumePayload, object_mode: bool = False) -> Path:
    """Write the resume state for the snapshot of ``itr`` whose bytes hash to ``params_sha256``.

    Streams each array into the zip (no copy of the replay in memory) through an atomic
    replace, or in object mode in sequence under its own name (``object_store.writing``: a
    killed writer's part is published, and passed over by ``find``); call it before writing
    the snapshot files.
    """
    path = run_path / file_name(itr)
    meta = {"format": FORMAT, "itr": itr, "cum_steps": cum_steps,
            "params_sha256": params_sha256, "settings": _settings(config),
            "versions": provenance.versions(), "state": payload.meta}
    # in object mode an earlier one of this name was never committed, or is this write's own
    # first try before a retry
    opened = (object_store.writing(path, replace=os.path.lexists(path)) if object_mode
              else atomic.replacing(path))
    with opened as handle, zipfile.ZipFile(
            handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
        zf.writestr(META, json.dumps(meta))
        for name, array in payload.arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return path


def _read_member(zf: zipfile.ZipFile, name: str) -> bytes:
    """A small member read whole, refused when it says (or turns out) to be large: a zip's
    member sizes are its own claims, and a crafted one may inflate without bound."""
    with zf.open(name) as member:
        data = member.read(safe_read.JSON_LIMIT + 1)
    if len(data) > safe_read.JSON_LIMIT:
        raise ValueError(f"{name} is larger than {safe_read.JSON_LIMIT} bytes")
    return data


class ResumeState:
    """A resume-state file on disk: its meta read eagerly, its arrays read on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with self._zip() as zf:
                self.meta: dict[str, Any] = safe_read.loads(_read_member(zf, META))
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as err:
            raise self._unreadable(err) from None
        if isinstance(self.meta, dict) and self.meta.get("format") != FORMAT:
            raise self._unreadable(f"format {self.meta.get('format')!r}, expected {FORMAT}")
        if not (isinstance(self.meta, dict) and isinstance(self.meta.get("state"), dict)
                and isinstance(self.meta.get("settings"), dict)
                and isinstance(self.meta.get("params_sha256"), str)):
            raise self._unreadable(f"{META} is not the record this trainer writes")

    @contextlib.contextmanager
    def _zip(self) -> Iterator[zipfile.ZipFile]:
        """The file as a zip archive, opened as every file on the volume is (``safe_read``)."""
        with (safe_read.open_file(self.path, limit=safe_read.RESUME_STATE_LIMIT) as handle,
              zipfile.ZipFile(handle) as archive):
            yield archive

    def _unreadable(self, why: Exception | str) -> SnapshotError:
        """The line for a resume state that cannot be used; an outage's error (EIO reading
        it) is no such thing, and stops the command instead (exit 10)."""
        if isinstance(why, OSError):
            raise_if_outage(self.path, why)
        what = why if isinstance(why, str) else f"{type(why).__name__}: {why}"
        return SnapshotError(
            f"{self.path}: unreadable resume state ({what}); delete it to "
            "resume with a fresh replay (not exact), or set RESUME_STATE=off.")

    @property
    def params_sha256(self) -> str:
        return str(self.meta["params_sha256"])

    @property
    def min_itr_learn(self) -> int:
        """The iteration updates start at in the run that wrote this state: a resume must keep
        it (engines save it as ``meta['min_itr_learn']``)."""
        return int(self.state["min_itr_learn"])

    @property
    def state(self) -> dict[str, Any]:
        """The engine's own meta, as it saved it."""
        return self.meta["state"]

    def _member(self, name: str, read: Callable[[Any], np.ndarray]) -> np.ndarray:
        try:
            with self._zip() as zf, zf.open(f"{name}.npy") as member:
                return read(member)
        except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError) as err:
            raise self._unreadable(err) from None

    def array(self, name: str) -> np.ndarray:
        """A saved array, as ``np.load(..., allow_pickle=False)`` reads it."""
        return self._member(name, lambda f: np.lib.format.read_array(f, allow_pickle=False))

    def read_into(self, name: str, out: np.ndarray) -> None:
        """Stream a saved array into ``out`` (same shape and dtype, C-contiguous).

        The replay's frames are most of a resume state; reading them in place avoids a second
        copy of the buffer in memory, which a job sized for one replay could not afford.
        """
        def read(member: Any) -> np.ndarray:
            version = np.lib.format.read_magic(member)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = header(member)
            if tuple(shape) != out.shape or dtype != out.dtype or fortran:
                raise ValueError(f"{name} is {dtype}{list(shape)}, expected "
                                 f"{out.dtype}{list(out.shape)}")
            view = memoryview(out.reshape(-1).view(np.uint8))
            done = 0
            while done < len(view):
                got = member.readinto(view[done:done + _CHUNK])
                if not got:
                    raise EOFError(f"{name} ends after {done} of {len(view)} bytes")
                done += got
            return out

        self._member(name, read)


def _on_disk(run_path: Path) -> list[Path]:
    return sorted((p for p in run_path.iterdir() if NAME.match(p.name)),
                  key=lambda p: int(NAME.match(p.name).group(1)))


def _size(path: Path) -> int | None:
    try:
        return os.lstat(path).st_size
    except OSError as err:
        raise_if_outage(path, err)
        return None


def find(run_path: Path, snapshot: snap.Snapshot, config: Config,
         log: Callable[[str], None], listed: dict[str, int] | None = None) -> ResumeState | None:
    """The resume state that belongs to ``snapshot`` (the run's newest), or None.

    None when ``RESUME_STATE=off`` or when the run folder holds no resume state (the resume
    is then a warm start with a fresh replay, said in the log). A folder whose resume states
    all belong to other snapshots is refused: its pieces were mixed by hand. ``listed`` (a
    run last written in object mode): the resume states its manifest lists, with their sizes;
    any other file may be the part a killed writer published, and is passed over.
    """
    found = _on_disk(run_path)
    if config.resume_state != "full":
        if found:
            log(f"RESUME_STATE=off: ignoring {found[-1].name}; the replay restarts empty "
                "(resume states are removed at the next snapshot)")
        return None
    if listed is not None:
        found = [p for p in found if _size(p) == listed.get(p.name)]
    if not found:
        log(f"no resume state beside {snapshot.path.name}: the replay restarts empty, so this "
            "resume is not exact")
        return None
    states = [ResumeState(p) for p in found]
    mine = [s for s in states if s.params_sha256 == snapshot.sha256]
    if not mine:
        other = states[-1]
        raise SnapshotError(
            f"{snapshot.path} (itr {snapshot.itr}, sha256 {snapshot.sha256[:12]}) does not "
            f"belong with {other.path.name} (written for itr {other.meta['itr']}, sha256 "
            f"{other.params_sha256[:12]}): this resume set was mixed. Put back the snapshot it "
            "belongs to, or delete the resume-itr_*.npz files (or set RESUME_STATE=off) to "
            "resume with a fresh replay (not exact).")
    state = mine[-1]
    differ = {k: (v, config.as_dict().get(k)) for k, v in state.meta["settings"].items()
              if config.as_dict().get(k) != v}
    if differ:
        what = ", ".join(f"{k}={now} (the run used {was})" for k, (was, now) in differ.items())
        raise ConfigError(
            f"RESUME_STATE=full: {what}; an exact resume needs the run's settings. Use them, "
            "or set RESUME_STATE=off to continue with a fresh replay.")
    return state


def prune(run_path: Path, keep: Path | None,
          delete: Callable[[Path], bool] | None = None) -> None:
    """Delete every resume state but ``keep``: only the newest snapshot's is ever used.
    ``delete`` (object mode): how, on a volume that may refuse it (then the files stay), with
    nothing to fsync."""
    doomed = [p for p in _on_disk(run_path) if p != keep]
    for path in doomed:
        if delete is None:
            path.unlink(missing_ok=True)
        elif not delete(path):
            return
    if doomed and delete is None:
        atomic.fsync_dir(run_path)
