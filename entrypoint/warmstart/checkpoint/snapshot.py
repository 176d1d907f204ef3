"""rlpyt's snapshot, read safely and described in the user's words.

A snapshot is rlpyt's ``params.pkl`` / ``itr_N.pkl``: a ``torch.save`` dict with ``itr``,
``cum_steps``, ``agent_state_dict`` and ``optimizer_state_dict`` (``AsyncRl`` runners add
``sampler_itr`` and ``cum_updates``: ``AsyncCounters``). The model's key names and
shapes are the contract with rlpyt, so everything here is about that dict and nothing about
training. Loading never runs pickled code (``weights_only=True``) and opens the file only as a
regular file of a snapshot's size (``safe_read``: never a FIFO, a device or a link loop); every
way a file can be unusable becomes one ``SnapshotError`` naming the file and what to do.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import pickle
import re
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import MAX_STEPS, MAX_UPDATES
from ..errors import SnapshotError
from . import safe_read
from .volume_errors import raise_if_outage

SNAPSHOT_NAME = re.compile(r"^(params|itr_\d+)\.pkl$")

_PLAIN_OUT = "head.model.2.weight"
_DUELING_OUT = "head.advantage_out.weight"
_CONV_KEYS = tuple(f"conv.conv.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias"))
_PLAIN_KEYS = _CONV_KEYS + tuple(f"head.model.{i}.{p}" for i in (0, 2) for p in ("weight", "bias"))
_DUELING_KEYS = _CONV_KEYS + (
    "head.advantage_bias",
    "head.advantage_hidden.model.0.weight", "head.advantage_hidden.model.0.bias",
    "head.advantage_out.weight",
    "head.value.model.0.weight", "head.value.model.0.bias",
    "head.value.model.2.weight", "head.value.model.2.bias",
)


class UnsafeSnapshotError(SnapshotError):
    """A file that would execute code when unpickled: never skipped quietly, always refused."""


class NonFiniteSnapshotError(SnapshotError):
    """A snapshot whose weights or optimizer state hold NaN or infinity: what a diverged run
    writes. Never a start point (its update count would make it every later job's choice);
    discovery skips it like a damaged file, INIT_SNAPSHOT stops on it."""


class NotASnapshotError(SnapshotError):
    """A file named like a snapshot that torch cannot read at all: empty, cut short, damaged
    or another kind of file. Discovery skips it (with a log line) like any unusable snapshot."""


@dataclass(frozen=True)
class ModelShape:
    """What a model state dict is: how many actions it scores, and with which head."""

    n_actions: int
    dueling: bool

    @property
    def head(self) -> str:
        return "dueling" if self.dueling else "plain"


@dataclass(frozen=True)
class AsyncCounters:
    """What rlpyt's ``AsyncRl`` runners record besides ``MinibatchRl``'s counters.

    There sampling and optimization run in separate processes: the snapshot's ``itr`` counts
    optimizer iterations (``optimize_agent`` calls, ``updates_per_sync`` updates each), while
    ``sampler_itr`` counts sampler iterations and ``cum_steps = sampler_itr * batch_T *
    batch_B``; ``cum_updates`` is the algorithm's update counter, which restarts at 0 in every
    rlpyt run (Adam's ``step`` does not when rlpyt's warm-start recipe carries the optimizer
    state over). Updates are not a fixed function of steps: the optimizer runs at its own
    pace, at most ``replay_ratio`` (``AsyncRlBase.optim_startup``'s throttle).
    """

    opt_itr: int  # the snapshot's ``itr``: optimizer iterations
    sampler_itr: int
    cum_updates: int

    def describe(self) -> str:
        return (f"an asynchronous rlpyt run (AsyncRl): its itr {self.opt_itr} counts optimizer "
                f"iterations, sampler_itr {self.sampler_itr} its sampling, cum_updates "
                f"{self.cum_updates} its own updates")


def sampling_counters(path: Path, params: dict[str, Any]) -> tuple[int, AsyncCounters | None]:
    """The sampler iteration a snapshot stands at, and its ``AsyncCounters`` when an AsyncRl
    runner wrote it (``sampler_itr`` and ``cum_updates`` beside ``itr``).

    Everything in this project counts progress in sampler iterations, so an AsyncRl
    snapshot's position is its ``sampler_itr``, never its ``itr``.
    """
    itr = _as_int(path, params, "itr")
    if "sampler_itr" not in params and "cum_updates" not in params:
        return itr, None
    found = AsyncCounters(opt_itr=itr, sampler_itr=_as_int(path, params, "sampler_itr"),
                          cum_updates=_as_int(path, params, "cum_updates"))
    return found.sampler_itr, found


@dataclass
class Snapshot:
    """A loaded snapshot, normalised: ``target`` is filled in when the file held a bare model;
    ``itr`` is the sampler iteration (an AsyncRl snapshot's ``sampler_itr``, whose own counters
    are in ``asynchronous``)."""

    path: Path
    itr: int
    cum_steps: int
    model: OrderedDict[str, torch.Tensor]
    target: OrderedDict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    shape: ModelShape
    sha256: str
    asynchronous: AsyncCounters | None = None  # an AsyncRl snapshot's own counters

    @property
    def lr(self) -> float | None:
        """The learning rate saved in the optimizer state (rlpyt restores it silently)."""
        if not self.optimizer or not self.optimizer.get("param_groups"):
            return None
        return float(self.optimizer["param_groups"][0]["lr"])

    @property
    def updates(self) -> int | None:
        """Optimizer updates this snapshot's weights have had (see ``optimizer_updates``)."""
        return optimizer_updates(self.optimizer)

    @property
    def parameter_count(self) -> int:
        return sum(t.numel() for t in self.model.values())


def model_shape(state_dict: dict[str, torch.Tensor], source: Path) -> ModelShape:
    """Read (n_actions, dueling) off rlpyt AtariDqnModel keys; refuse anything else plainly."""
    if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise SnapshotError(f"{source}: agent_state_dict does not hold a model state dict "
                            "(names mapped to tensors); this is not an rlpyt snapshot.")
    dueling = "head.advantage_bias" in state_dict
    expected = _DUELING_KEYS if dueling else _PLAIN_KEYS
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected]
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise SnapshotError(
            f"{source}: agent_state_dict is not an rlpyt AtariDqnModel ({what}); "
            "only AtariDqnModel snapshots (plain or dueling) can be warm-started.")
    out = state_dict[_DUELING_OUT if dueling else _PLAIN_OUT]
    first = state_dict["conv.conv.0.weight"]
    if tuple(first.shape) != (32, 4, 8, 8):
        raise SnapshotError(
            f"{source}: first conv layer has shape {tuple(first.shape)}, expected (32, 4, 8, 8) "
            "(4 stacked 104x80 frames); this is not an rlpyt AtariDqnModel snapshot.")
    if out.dim() != 2:
        raise SnapshotError(
            f"{source}: output layer has shape {tuple(out.shape)}, expected (actions, inputs); "
            "this is not an rlpyt AtariDqnModel snapshot.")
    return ModelShape(n_actions=int(out.shape[0]), dueling=dueling)


def _torch_load(path: Path, fd: int, *, counters_only: bool = False) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` of the file open as ``fd``; any failure
    becomes one ``SnapshotError``.

    The file comes from a volume anyone may have written to, so every exception the loader
    raises is caught: torch's weights-only unpickler meets random bytes with ``IndexError`` or
    ``KeyError`` as often as with ``UnpicklingError``. Its warnings (a pickle protocol it does
    not expect) are torch's business, not the user's, and stay out of the output. The file is
    read through a file object, record by record, so loading holds the tensors and never a
    second copy of the file's bytes. ``counters_only`` (a zip snapshot): read the pickle
    record and only the tensors of a few elements (``_counters_only``).
    """
    _check_header(path, fd)
    try:
        with (warnings.catch_warnings(), os.fdopen(os.dup(fd), "rb") as handle):
            warnings.simplefilter("ignore")
            handle.seek(0)  # a dup shares the offset the checks above moved
            loaded = (_counters_only(handle) if counters_only
                      else torch.load(handle, map_location="cpu", weights_only=True))
    except OSError as err:
        raise_if_outage(path, err)
        raise _unreadable_fd(path, fd) from None
    except Exception as err:  # noqa: BLE001 - see the docstring: the input is hostile
        refused = _refused_global(err)
        if refused:
            raise UnsafeSnapshotError(
                f"{path}: refused to load: the file pickles {refused}, which would run code "
                "on load (only tensors and plain containers are loaded). Re-save it with "
                "plain dicts and tensors from a trusted rlpyt install, or delete it.") from None
        raise _unreadable_fd(path, fd) from None
    if not isinstance(loaded, dict):
        raise SnapshotError(f"{path}: holds a {type(loaded).__name__}, not rlpyt's snapshot "
                            "dict (itr, cum_steps, agent_state_dict, optimizer_state_dict).")
    return loaded


COUNTER_TENSOR_BYTES = 64
"""The largest tensor ``_counters_only`` reads: Adam's ``step`` is one number (4 or 8 bytes)."""


def _counters_only(handle: io.BufferedReader) -> Any:
    """A zip snapshot's pickle, unpickled by torch's weights-only unpickler (the one
    ``torch.load(weights_only=True)`` uses), with every tensor larger than
    COUNTER_TENSOR_BYTES left unread on the ``meta`` device: the counters (``itr``,
    ``cum_steps``, Adam's ``step``) from kilobytes of a 58 MB file. Every byte comes through
    ``read`` calls, so a volume's outage is an OSError; a memory map would turn it into
    SIGBUS, a death without a line. (The unpickler's module is private; torch is pinned.)"""
    archive = zipfile.ZipFile(handle)
    record = next(n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1)
    folder = record[:-len("data.pkl")]

    def storage(pid: Any) -> torch.storage.TypedStorage:
        kind, storage_type, key, _, numel = pid
        if kind != "storage" or not isinstance(key, str) or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"not a storage: {pid!r:.80}")
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        nbytes = numel * torch._utils._element_size(dtype)
        info = archive.getinfo(f"{folder}data/{key}")  # KeyError: the record is missing
        if info.file_size != nbytes:
            raise pickle.UnpicklingError(f"storage {key}: {info.file_size} bytes, not {nbytes}")
        if nbytes <= COUNTER_TENSOR_BYTES:
            data = archive.read(info)
            untyped = torch.UntypedStorage.from_buffer(data, dtype=torch.uint8) if data else (
                torch.UntypedStorage(0))
        else:
            untyped = torch.UntypedStorage(nbytes, device="meta")
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)

    with archive.open(record) as pickled:
        unpickler = torch._weights_only_unpickler.Unpickler(pickled, encoding="utf-8")
        unpickler.persistent_load = storage
        return unpickler.load()


_ZIP_MAGIC = b"PK\x03\x04"
MAX_RECORDS = 4096
"""Records in a snapshot's zip: one per tensor plus a few (56 in rlpyt's pong snapshot)."""
PICKLE_RECORD_LIMIT = 64 * safe_read.MB
"""A snapshot's pickle record (names and layout, not the tensors): kilobytes in rlpyt's."""


def _check_header(path: Path, fd: int) -> None:
    """Decide what the file is from its first bytes (and a zip's directory at its end) before
    reading it: torch's zip archive, every record stored as torch writes it, or torch's older
    format. Anything else (zeros, another kind of file, a zip whose records would inflate or
    whose pickle is larger than any snapshot's) is refused without reading its body, so a
    3 GB file of zeros costs a few reads, not 3 GB of memory."""
    head = b""
    try:
        head = os.pread(fd, 4, 0)
        with os.fdopen(os.dup(fd), "rb") as handle:
            # the end record alone says how many records the directory lists: read no
            # directory of millions of entries into memory (zipfile's own reader, private API)
            end = zipfile._EndRecData(handle) if head.startswith(_ZIP_MAGIC) else None
            if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > MAX_RECORDS:
                raise _not_a_snapshot(path, f"a zip archive of {end[zipfile._ECD_ENTRIES_TOTAL]} "
                                            "records, far more than a snapshot's")
            is_zip = end is not None and zipfile.is_zipfile(handle)
            infos = zipfile.ZipFile(handle).infolist() if is_zip else []
    except OSError as err:
        raise_if_outage(path, err)
        raise _unreadable(path, b"PK" if head.startswith(b"PK") else head, False) from None
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise _unreadable(path, b"PK" if head.startswith(b"PK") else head, False) from None
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return  # a pickle (torch's older format begins with one): read as a stream, no copy
    if not is_zip:
        raise _unreadable(path, head, is_zip)
    size = os.fstat(fd).st_size
    if any(i.compress_type != zipfile.ZIP_STORED or i.file_size > size
           or (i.filename.endswith(".pkl") and i.file_size > PICKLE_RECORD_LIMIT)
           for i in infos):
        raise _not_a_snapshot(path, "a zip archive whose records are not a torch snapshot's "
                                    "(compressed, or larger than any snapshot's)")


_REFUSED_GLOBAL = re.compile(
    r"Unsupported global: GLOBAL (\S+) was not|unsupported GLOBAL (\S+) whose module")
_PYTHON_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _refused_global(err: Exception) -> str | None:
    """The Python name a pickle asked for and the unpickler refused, if that is what failed.

    Only that means "would run code". The same exception also reports garbage bytes read as
    pickle opcodes, whose "names" are not Python names (torch drops ``builtins.`` from the
    name it reports, so ``exec`` comes undotted), and a real snapshot with a flipped byte in
    one of its own names (``tkrch._utils._rebuild_tensor_v2``): both are damage, not intent.
    """
    if not isinstance(err, pickle.UnpicklingError):
        return None
    found = _REFUSED_GLOBAL.search(str(err))
    name = found and (found.group(1) or found.group(2))
    if not name or not _PYTHON_NAME.fullmatch(name) or _one_character_off_an_allowed(name):
        return None
    return name


@functools.cache
def _allowed_globals() -> frozenset[str]:
    """The names torch's weights-only loader accepts, as its errors spell them.

    Read from torch's private allowlist (stable since torch 2.4); without it, every refused
    name counts as intended, which errs on the side of refusing.
    """
    from torch import _weights_only_unpickler as loader

    allowed = getattr(loader, "_get_allowed_globals", dict)()
    return frozenset(name.removeprefix("builtins.") for name in allowed)


def _one_character_off_an_allowed(name: str) -> bool:
    """Whether ``name`` differs from an allowed global in exactly one character."""
    return any(len(known) == len(name) and sum(a != b for a, b in zip(known, name)) == 1
               for known in _allowed_globals())


def _unreadable(path: Path, head: bytes, is_zip: bool) -> SnapshotError:
    """Say what the file looks like instead of a snapshot, judged by its first bytes."""
    if not head:
        what = "the file is empty"
    elif head.startswith(b"PK") and not is_zip:
        what = ("a zip archive that is cut short (a crash while copying or writing leaves "
                "one like this)")
    elif head.startswith(b"PK"):
        what = ("a zip archive without a snapshot torch can read safely inside (damaged, "
                "parts missing or renamed, or pickled with a protocol other than torch's 2)")
    elif head.startswith(b"\x80"):
        what = "a pickle that is cut short, damaged, or not torch's"
    else:
        what = "neither a torch archive nor a pickle"
    return _not_a_snapshot(path, what)


def _unreadable_fd(path: Path, fd: int) -> SnapshotError:
    """``_unreadable`` for the file open as ``fd``."""
    try:
        head = os.pread(fd, 4, 0)
        with os.fdopen(os.dup(fd), "rb") as handle:
            is_zip = zipfile.is_zipfile(handle)
    except OSError as err:
        raise_if_outage(path, err)
        return SnapshotError(f"{path}: cannot read snapshot ({err.strerror or err}).")
    return _unreadable(path, head, is_zip)


def _not_a_snapshot(path: Path, what: str) -> NotASnapshotError:
    return NotASnapshotError(f"{path}: not a snapshot file: {what}. Delete it, or point "
                             "INIT_SNAPSHOT at another file.")


def _open(path: Path) -> int:
    """A descriptor of the snapshot file, opened safely (``safe_read``); one SnapshotError
    when it is missing, cannot be opened, or is not a regular file of a snapshot's size."""
    try:
        return safe_read.open_fd(path, limit=safe_read.SNAPSHOT_LIMIT)
    except FileNotFoundError:
        raise SnapshotError(f"{path}: snapshot file does not exist.") from None
    except PermissionError as err:
        raise SnapshotError(f"{path}: cannot read snapshot ({err.strerror}).") from None
    except safe_read.UnreadableFile as err:
        raise _not_a_snapshot(path, err.why) from None
    except OSError as err:  # an outage's error is not one here (safe_read)
        raise SnapshotError(f"{path}: cannot read snapshot ({err.strerror or err}).") from None


def _sha256(path: Path, fd: int) -> str:
    """The sha256 of the file behind ``fd``, read in chunks (never the whole file at once)."""
    digest = hashlib.sha256()
    done = 0
    try:
        while chunk := os.pread(fd, 16 << 20, done):
            digest.update(chunk)
            done += len(chunk)
            if done > safe_read.SNAPSHOT_LIMIT:
                raise _not_a_snapshot(path, "a file that grew past any snapshot's size")
    except OSError as err:
        raise_if_outage(path, err)
        raise SnapshotError(f"{path}: cannot read snapshot ({err.strerror or err}).") from None
    return digest.hexdigest()


def _as_int(path: Path, params: dict[str, Any], key: str) -> int:
    """A counter (``itr``, ``cum_steps``) as rlpyt writes it: a Python int from 0 to
    MAX_STEPS (250 times rlpyt's longest Atari runs); anything else is damage, refused here
    before a log line, TensorBoard or a schedule computes with it."""
    value = params.get(key)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if (not isinstance(value, int) or isinstance(value, bool) or value < 0
            or value > MAX_STEPS):
        shown = f"{value!r:.40}"
        raise SnapshotError(f"{path}: '{key}' is {shown}, expected an int from 0 to "
                            f"{MAX_STEPS:_} as rlpyt writes it; the file is damaged: delete it, "
                            "or point INIT_SNAPSHOT at another file.")
    return value


_NOT_OPTIMIZER = ("is not a torch.optim state dict (per-parameter state and param groups with "
                  "a learning rate)")


def _optimizer_problem(value: Any) -> str | None:
    """What makes ``value`` unusable as the Adam state a warm start continues, if anything:
    the shape every reader relies on (per-parameter state, param groups with a learning rate),
    and the numbers Adam computes with in their ranges: ``step`` a whole number of updates from
    0 to MAX_UPDATES, ``lr`` and ``eps`` finite and >= 0, ``betas`` from 0 to below 1,
    ``weight_decay`` finite and >= 0. Out of them, Adam raises or overflows mid-training."""
    if not isinstance(value, dict):
        return _NOT_OPTIMIZER
    state, groups = value.get("state"), value.get("param_groups")
    if not (isinstance(state, dict) and all(isinstance(s, dict) for s in state.values())
            and isinstance(groups, list) and bool(groups)
            and all(_is_number(s["step"]) for s in state.values() if "step" in s)
            and all(isinstance(g, dict) and _is_number(g.get("lr"))
                    and isinstance(g.get("params"), list) for g in groups)):
        return _NOT_OPTIMIZER
    for key, entry in state.items():
        if "step" not in entry:
            continue
        step = _real(entry["step"])
        if step is None or not (0 <= step <= MAX_UPDATES and step.is_integer()):
            return (f"is damaged: state {key!r:.20}'s Adam step is {_shown(entry['step'])}, "
                    f"not a whole number of updates from 0 to {MAX_UPDATES:.0e}")
    for i, group in enumerate(groups):
        for name in ("lr", "eps", "weight_decay"):
            if name == "lr" or name in group:
                number = _real(group.get(name))
                if number is None or number < 0:
                    return (f"is damaged: param group {i}'s {name} is "
                            f"{_shown(group.get(name))}, not a finite number >= 0")
        betas = group.get("betas")
        if betas is not None and not (
                isinstance(betas, (list, tuple)) and len(betas) == 2
                and all((b := _real(x)) is not None and 0 <= b < 1 for x in betas)):
            return (f"is damaged: param group {i}'s betas are {_shown(betas)}, not two numbers "
                    "from 0 to below 1")
    return None


def _real(value: Any) -> float | None:
    """A finite real number as Python or a one-element tensor holds it, as a float."""
    if not _is_number(value):
        return None
    number = float(value.item() if isinstance(value, torch.Tensor) else value)
    return number if math.isfinite(number) else None


def _shown(value: Any) -> str:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return f"{value!r:.40}"


def _is_number(value: Any) -> bool:
    """A real number as Python or a one-element tensor holds it (Adam's ``step`` is either)."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_complex()
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tensors(value: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a nest of dicts and lists, with its dotted name."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{name}.{i}")


def non_finite(**parts: Any) -> str | None:
    """The name of the first floating-point tensor in ``parts`` (state dicts, optimizer state)
    that holds a NaN or an infinity; None when all are finite. One pass over the weights: a few
    milliseconds for this model, paid once per snapshot read or written; in chunks, so the
    check's temporaries stay small beside a large tensor."""
    for name, tensor in _tensors(parts, ""):
        if tensor.is_floating_point() and not all(
                bool(torch.isfinite(chunk).all()) for chunk in tensor.reshape(-1).split(1 << 22)):
            return name
    return None


def read(path: Path) -> Snapshot:
    """Load and normalise a snapshot; accept ``agent_state_dict`` whole or as a bare model dict."""
    fd = _open(path)
    try:
        params = _torch_load(path, fd)
        digest = _sha256(path, fd)
    finally:
        os.close(fd)
    missing = [k for k in ("itr", "cum_steps", "agent_state_dict") if k not in params]
    if missing:
        raise SnapshotError(
            f"{path}: missing {', '.join(missing)}; expected rlpyt's snapshot dict "
            "(itr, cum_steps, agent_state_dict, optimizer_state_dict).")
    (itr, asynchronous), cum_steps = sampling_counters(path, params), _as_int(
        path, params, "cum_steps")
    agent = params["agent_state_dict"]
    if not isinstance(agent, dict):
        raise SnapshotError(f"{path}: agent_state_dict is a {type(agent).__name__}, not a dict.")
    if "model" in agent:
        model, target = agent["model"], agent.get("target", agent["model"])
    else:  # a bare model state dict, as rlpyt before commit 2e36793 took it
        model = target = agent
    shape = model_shape(model, path)
    if model_shape(target, path) != shape:
        raise SnapshotError(f"{path}: agent_state_dict's model and target differ in shape.")
    optimizer = params.get("optimizer_state_dict")
    problem = None if optimizer is None else _optimizer_problem(optimizer)
    if problem is not None:
        raise SnapshotError(f"{path}: optimizer_state_dict {problem}; a warm start cannot "
                            "continue it. Delete the file, or point INIT_SNAPSHOT at another one.")
    bad = non_finite(model=model, target=target, optimizer=optimizer)
    if bad is not None:
        raise NonFiniteSnapshotError(
            f"{path}: {bad} holds NaN or infinite values (training that diverged wrote it); "
            "it cannot be a start point. Delete it, or point INIT_SNAPSHOT at another file.")
    return Snapshot(
        path=path, itr=itr, cum_steps=cum_steps,
        model=OrderedDict(model), target=OrderedDict(target), optimizer=optimizer, shape=shape,
        sha256=digest, asynchronous=asynchronous)


@dataclass(frozen=True)
class Counters:
    """How much training a snapshot holds, read without its tensors (``itr`` as in
    ``Snapshot``: the sampler iteration)."""

    itr: int
    cum_steps: int
    updates: int | None  # Adam's step count; None without optimizer state
    asynchronous: AsyncCounters | None = None  # an AsyncRl snapshot's own counters


def optimizer_updates(optimizer: Any) -> int | None:
    """The optimizer's update count: Adam's ``step``, shared by all parameters.

    rlpyt's warm-start recipe restarts ``itr`` and ``cum_steps`` at 0 but carries the Adam
    state over, so this keeps counting across a chain of rlpyt runs where the counters do not.
    None when the snapshot has no optimizer state or its step is not a number. torch keeps
    ``step`` as a float32 tensor, exact up to 2**24 (16.7 million) updates.
    """
    state = optimizer.get("state") if isinstance(optimizer, dict) else None
    if not isinstance(state, dict):
        return None
    steps = []
    for entry in state.values():
        step = entry.get("step") if isinstance(entry, dict) else None
        if isinstance(step, torch.Tensor) and step.numel() == 1:
            step = step.item()
        if (isinstance(step, (int, float)) and not isinstance(step, bool)
                and math.isfinite(step) and step >= 0):
            steps.append(int(step))
    return max(steps) if steps else None


def read_training(path: Path) -> Counters:
    """``itr``, ``cum_steps`` and the optimizer's update count, without reading the tensors.

    Only the pickle record and the tensors of one number are read (``_counters_only``), so
    ranking a volume of many 58 MB snapshots reads kilobytes per file (docs/warm-start.md: 50
    copies rank in well under 1 s); torch's older non-zip format is read whole. A file that is
    truncated or not a torch zip archive fails here already, which is what lets discovery skip
    a snapshot that a crash cut short.
    """
    fd = _open(path)
    try:
        try:
            head = os.pread(fd, 4, 0)
        except OSError as err:
            raise_if_outage(path, err)
            raise SnapshotError(f"{path}: cannot read snapshot ({err.strerror}).") from None
        params = _torch_load(path, fd, counters_only=head == _ZIP_MAGIC)
    finally:
        os.close(fd)
    itr, asynchronous = sampling_counters(path, params)
    return Counters(itr=itr, cum_steps=_as_int(path, params, "cum_steps"),
                    updates=optimizer_updates(params.get("optimizer_state_dict")),
                    asynchronous=asynchronous)


def check_fits(snapshot: Snapshot, *, game: str, n_actions: int, dueling: bool) -> None:
    """Refuse a snapshot for another game or head before training, instead of a size mismatch."""
    if snapshot.shape.n_actions != n_actions:
        raise SnapshotError(
            f"{snapshot.path}: snapshot scores {snapshot.shape.n_actions} actions but GAME={game} "
            f"has {n_actions}; it was trained on another game. Set GAME to that game, or point "
            "CKPT_DIR/INIT_SNAPSHOT at a snapshot of this one.")
    if snapshot.shape.dueling != dueling:
        want = "1" if snapshot.shape.dueling else "0"
        raise SnapshotError(
            f"{snapshot.path}: snapshot has a {snapshot.shape.head} head but DUELING="
            f"{'1' if dueling else '0'}; set DUELING={want} to warm-start from it.")


def to_bytes(*, itr: int, cum_steps: int, model: dict[str, torch.Tensor],
             target: dict[str, torch.Tensor], optimizer: dict[str, Any],
             asynchronous: AsyncCounters | None = None) -> bytes:
    """Serialise exactly rlpyt's dict (Python ints, CPU tensors) in torch's zip format: the
    ``MinibatchRl`` runners' keys, or with ``asynchronous`` the ``AsyncRl`` runners' (``itr``
    its optimizer iterations, then ``sampler_itr``, ``cum_steps``, ``cum_updates``, in
    ``AsyncRlBase.get_itr_snapshot``'s order)."""
    params: dict[str, Any] = {"itr": int(itr), "cum_steps": int(cum_steps)}
    if asynchronous is not None:
        params = {"itr": int(asynchronous.opt_itr),
                  "sampler_itr": int(asynchronous.sampler_itr),
                  "cum_steps": int(cum_steps),
                  "cum_updates": int(asynchronous.cum_updates)}
    params |= {
        "agent_state_dict": {"model": model, "target": target},
        "optimizer_state_dict": optimizer,
    }
    buffer = io.BytesIO()
    torch.save(params, buffer)
    return buffer.getvalue()
