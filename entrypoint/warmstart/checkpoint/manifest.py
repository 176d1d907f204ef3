"""A run's manifest (``manifest.json``): read, and checked field by field before anyone uses it.

The manifest names the run's parent snapshot, config, budget, every snapshot written, the
write in progress and the interrupted writes whose files did not land. A manifest that does not hold what this trainer writes is a damaged record:
readers that only look treat it as absent, a trainer refuses to write into the run.

Every manifest is also written as a write-once version (``object_store``); a run written in
object mode (a volume without rename) has only those, the newest whole one being the manifest.
Each manifest carries its writer's holder number and a ``version`` counter, and of a run's
``manifest.json`` and versions the one highest by (holder, version) wins: a run that moved
between volumes of either kind reads as it was last written, and a late write from a stalled
older holder (a ``manifest.json`` its rename put in place after the run was taken over, or a
version) never wins. In rename mode the versions only fence: a damaged ``manifest.json`` is
still a damaged record, as a rename never leaves one torn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import RunRecordError
from . import object_store, safe_read

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _record(value: Any, fields: dict[str, Callable[[Any], bool]]) -> bool:
    return isinstance(value, dict) and all(ok(value.get(k)) for k, ok in fields.items())


def _kind(*kinds: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, kinds) and not (
        isinstance(value, bool) and bool not in kinds)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


_PARENT = {"path": lambda value: isinstance(value, str) and "\x00" not in value,
           "sha256": _kind(str), "itr": _int, "cum_steps": _int}
_BUDGET = {k: _int for k in ("start_itr", "target_itr", "target_cum_steps",
                             "eps_decay_start_itr")} | {
    k: _optional(lambda value: _int(value) and value >= 1) for k in ("batch_T", "batch_B")}
_WRITE = {"sha256": _kind(str), "files": lambda files: isinstance(files, list) and all(
    isinstance(f, str) for f in files), "itr": _optional(_int), "cum_steps": _optional(_int)}
_ENTRY = {"file": _kind(str), "itr": _int, "cum_steps": _int, "sha256": _kind(str)}
MANIFEST_FIELDS: dict[str, Callable[[Any], bool]] = {
    "format": lambda value: value == MANIFEST_FORMAT,
    "status": _kind(str), "game": _kind(str), "created": _kind(str), "dueling": _kind(bool),
    "config": _kind(dict),
    "parent": _optional(lambda value: _record(value, _PARENT)),
    "budget": lambda value: _record(value, _BUDGET),
    "snapshots": lambda value: isinstance(value, list) and all(_record(e, _ENTRY)
                                                               for e in value),
    "targets": _optional(lambda value: isinstance(value, list) and all(
        isinstance(t, dict) for t in value)),
    "starts": _optional(_kind(list)),
    "start_progress": _optional(lambda value: _record(value, {"itr": _int, "cum_steps": _int})),
    "recorded_settings": _optional(_kind(dict)),
    "writing": _optional(lambda value: _record(value, _WRITE)),
    "holder": _optional(_int),
    "version": _optional(_int),
    "write_mode": _optional(lambda value: value in ("rename", "object")),
    "interrupted": _optional(lambda value: isinstance(value, list) and all(
        _record(w, _WRITE) for w in value)),
}
"""What every reader of a manifest relies on, checked once when it is read: a field a
hand edit or a bad disk changed is a damaged record, never a KeyError or TypeError later."""


def fields_problem(manifest: Any) -> str | None:
    if not isinstance(manifest, dict):
        return f"it holds a JSON {type(manifest).__name__}, not an object"
    wrong = [k for k, ok in MANIFEST_FIELDS.items() if not ok(manifest.get(k))]
    if wrong:
        return f"'{wrong[0]}' is {manifest.get(wrong[0])!r:.60}"
    return None


def _order(manifest: dict[str, Any]) -> tuple[int, int]:
    return manifest.get("holder") or 0, manifest.get("version") or 0


def highest_holder(manifest: dict[str, Any]) -> int:
    """The highest holder number a run's manifest carries (its own, its entries' and its
    writes'): a new holder takes a higher one even when the lease file was deleted."""
    numbers = [manifest.get("holder") or 0]
    for record in [*manifest["snapshots"], manifest.get("writing") or {},
                   *(manifest.get("interrupted") or [])]:
        numbers.append(record.get("holder") or 0)
    return max(n for n in numbers if isinstance(n, int))


def newest_record(run_dir: Path) -> tuple[dict[str, Any], Path] | None:
    """The run's manifest and the file it was read from (``manifest.json`` or its newest whole
    version), None when the folder has none; RunRecordError as ``load_manifest``."""
    path = run_dir / MANIFEST
    versioned = object_store.newest_manifest(run_dir, fields_problem)
    try:
        manifest = safe_read.read_json(path)
    except FileNotFoundError:
        return versioned
    except OSError as err:
        problem = err.strerror or str(err)
    except ValueError as err:  # not UTF-8, not JSON, nested too deep
        problem = f"not JSON: {str(err).splitlines()[0]:.80}"
    else:
        problem = fields_problem(manifest)
        if problem is None:
            if versioned is not None and _order(versioned[0]) > _order(manifest):
                return versioned
            return manifest, path
    if versioned is not None and versioned[0].get("write_mode") == "object":
        return versioned  # a run continued in object mode: its versions are its record
    # in rename mode manifest.json is replaced only by rename, whole: damage is not ours
    raise RunRecordError(
        f"{path}: damaged run record ({problem}); a trainer never writes into a run it cannot "
        f"read: restore the file, or move the folder {run_dir} aside, or use another RUN_NAME.")


def load_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run's manifest, None when the folder has none (not one of ours, or it never got
    that far); RunRecordError when there is one that cannot be read, is not JSON, or does not
    hold the fields and types this trainer writes (``MANIFEST_FIELDS``)."""
    found = newest_record(run_dir)
    return None if found is None else found[0]


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """``load_manifest`` for readers that only look (discovery, report, lineage): a damaged
    manifest counts as none."""
    try:
        return load_manifest(run_dir)
    except RunRecordError:
        return None
