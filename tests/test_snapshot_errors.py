"""Hostile snapshot files: whatever lies on the volume, the reader answers with one SnapshotError.

A file named params.pkl may be garbage, text, cut short, bit-flipped, a zip missing parts or a
valid torch file of another structure. Each must give a SnapshotError in whole sentences (never
another exception, never a library warning), and only a pickle that asks for a Python global
is called unsafe. The in-process fuzz covers many cases fast; a handful go through the real
`warmstart train`, `inspect` and `eval` commands.
"""

from __future__ import annotations

import base64
import random
import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import FILES_ONLY_RUN, SHORT_RUN, warmstart
from warmstart.checkpoint import discovery, resume_state
from warmstart.checkpoint import snapshot as snap
from warmstart.checkpoint.manifest import MANIFEST, read_manifest
from warmstart.checkpoint.rows import PROGRESS


def _outcome(path: Path) -> list[tuple[int, int] | snap.Snapshot | snap.SnapshotError]:
    """What both readers make of ``path``: a result or a SnapshotError, and no warning."""
    results: list[tuple[int, int] | snap.Snapshot | snap.SnapshotError] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for reader in (snap.read, snap.read_training):
            try:
                results.append(reader(path))
            except snap.SnapshotError as err:
                results.append(err)
    assert caught == [], [str(w.message) for w in caught]
    return results


def _assert_honest_error(path: Path) -> snap.SnapshotError:
    """``path`` is refused by both readers, as not a snapshot, in a message of whole sentences."""
    errors = _outcome(path)
    for err in errors:
        assert isinstance(err, snap.NotASnapshotError), (path.name, err)
        _assert_sentences(path, err)
    return errors[0]


def _assert_sentences(path: Path, err: snap.SnapshotError) -> None:
    """One line of our own words: the file, then whole sentences, no torch text."""
    message = str(err)
    assert message.startswith(f"{path}: ") and message.endswith(".") and "\n" not in message
    assert "weights_only" not in message and "Weights only" not in message


def _bytes_cases(seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    cases = [("empty", b""), ("text", b"this is not a snapshot\n"),
             ("json", b'{"itr": 1, "cum_steps": 4}\n'), ("pickle magic only", b"\x80\x02")]
    for i in range(60):
        raw = rng.randbytes(rng.randint(1, 3000))
        cases.append((f"random {i}", raw))
        cases.append((f"base64 {i}", base64.b64encode(raw)))
        cases.append((f"base64 lines {i}", base64.encodebytes(raw)))
    return cases


def test_garbage_files_are_not_snapshots_and_never_unsafe(tmp_path: Path) -> None:
    for i, (name, data) in enumerate(_bytes_cases(seed=15)):
        path = tmp_path / f"{i}" / "params.pkl"
        path.parent.mkdir()
        path.write_bytes(data)
        err = _assert_honest_error(path)
        assert "would run code" not in str(err), name


def test_cut_short_rlpyt_snapshot_is_not_a_snapshot_at_every_offset(
        rlpyt_snapshot: Path, tmp_path: Path) -> None:
    data = rlpyt_snapshot.read_bytes()
    rng = random.Random(4)
    offsets = sorted({2, 3, 4, 30, 100, 5_000, len(data) - 1, len(data) - 22,
                      *(rng.randrange(2, len(data)) for _ in range(30))})
    path = tmp_path / "params.pkl"
    for offset in offsets:
        path.write_bytes(data[:offset])
        err = _assert_honest_error(path)
        assert "zip archive that is cut short" in str(err), offset


def test_flipped_bytes_give_a_snapshot_or_a_snapshot_error(
        rlpyt_snapshot: Path, tmp_path: Path) -> None:
    """A flip inside tensor data still loads (the weights differ); anywhere else it is refused."""
    data = rlpyt_snapshot.read_bytes()
    with zipfile.ZipFile(rlpyt_snapshot) as archive:
        pickle_at = archive.getinfo("params/data.pkl").header_offset
    rng = random.Random(7)
    positions = [0, 2, 10, pickle_at + 40, pickle_at + 200, len(data) - 10, len(data) - 40,
                 *(pickle_at + 60 + rng.randrange(5000) for _ in range(25)),
                 *(rng.randrange(len(data)) for _ in range(5))]
    path = tmp_path / "params.pkl"
    refused = 0
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        for result in _outcome(path):
            if isinstance(result, snap.SnapshotError):
                refused += 1
                assert not isinstance(result, snap.UnsafeSnapshotError), (position, result)
                _assert_sentences(path, result)
    assert refused > 0  # the headers' flips at least are caught


def _rezip(source: Path, target: Path, member: Callable[[str], str | None]) -> None:
    """Copy the zip at ``source`` to ``target``, renaming or (``None``) dropping members."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            name = member(info.filename)
            if name is not None:
                new.writestr(name, old.read(info))


@pytest.mark.parametrize("change", [
    lambda n: None if n.endswith("data.pkl") else n,
    lambda n: None if n.endswith("/data/6") else n,
    lambda n: None,
    lambda n: n.replace("data.pkl", "data.pickle"),
    lambda n: n.replace("/data/1", "/data/x1"),
    lambda n: n.replace("params/", "", 1) if n.endswith("data.pkl") else n,
], ids=["no data.pkl", "a tensor missing", "empty archive", "data.pkl renamed",
        "tensors renamed", "data.pkl moved"])
def test_zip_with_members_missing_or_renamed_is_not_a_snapshot(
        rlpyt_snapshot: Path, tmp_path: Path, change: Callable[[str], str | None]) -> None:
    path = tmp_path / "params.pkl"
    _rezip(rlpyt_snapshot, path, change)
    for result in _outcome(path):
        assert isinstance(result, snap.NotASnapshotError), result
        _assert_sentences(path, result)


def _state(**model: torch.Tensor | object) -> dict:
    return {"model": model, "target": model}


@pytest.mark.parametrize("params, message", [
    ([1, 2, 3], "holds a list, not rlpyt's snapshot dict"),
    (torch.zeros(3), "holds a Tensor, not rlpyt's snapshot dict"),
    ({"itr": "7", "cum_steps": 4, "agent_state_dict": {}}, "'itr' is '7', expected"),
    ({"itr": 1, "cum_steps": -4, "agent_state_dict": {}}, "'cum_steps' is -4"),
    ({"itr": 1, "cum_steps": 4}, "missing agent_state_dict"),
    ({"itr": 1, "cum_steps": 4, "agent_state_dict": 5}, "agent_state_dict is a int"),
    ({"itr": 1, "cum_steps": 4, "agent_state_dict": {"model": 5}}, "does not hold a model"),
    ({"itr": 1, "cum_steps": 4, "agent_state_dict": _state(x=1)}, "does not hold a model"),
], ids=["list", "tensor", "itr text", "negative steps", "no agent", "agent int",
        "model int", "model of ints"])
def test_valid_torch_file_of_another_structure_is_refused(
        tmp_path: Path, params: object, message: str) -> None:
    path = tmp_path / "params.pkl"
    torch.save(params, path)
    with pytest.raises(snap.SnapshotError, match=message) as caught:
        snap.read(path)
    assert not isinstance(caught.value, (snap.UnsafeSnapshotError, snap.NotASnapshotError))


def test_model_with_a_flat_output_layer_is_refused(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    params = torch.load(rlpyt_snapshot, weights_only=True)
    for net in params["agent_state_dict"].values():
        net["head.model.2.weight"] = torch.zeros(6)
    path = tmp_path / "params.pkl"
    torch.save(params, path)
    with pytest.raises(snap.SnapshotError, match=r"output layer has shape \(6,\), expected"):
        snap.read(path)


@pytest.mark.parametrize("optimizer", [
    5, {"state": {}}, {"state": {}, "param_groups": 3}, {"state": {}, "param_groups": []},
    {"state": {}, "param_groups": [{"params": [0], "lr": "fast"}]},
    {"state": {0: {"step": "one"}}, "param_groups": [{"params": [0], "lr": 1e-4}]},
    {"state": [], "param_groups": [{"params": [0], "lr": 1e-4}]},
], ids=["int", "no groups", "groups int", "groups empty", "lr text", "step text",
        "state list"])
def test_optimizer_state_of_another_structure_is_refused(
        rlpyt_snapshot: Path, tmp_path: Path, optimizer: object) -> None:
    params = torch.load(rlpyt_snapshot, weights_only=True)
    params["optimizer_state_dict"] = optimizer
    path = tmp_path / "params.pkl"
    torch.save(params, path)
    with pytest.raises(snap.SnapshotError, match="optimizer_state_dict is not a torch.optim"):
        snap.read(path)


def test_pickle_protocol_torch_does_not_read_is_refused_quietly(
        rlpyt_snapshot: Path, tmp_path: Path) -> None:
    """torch warns about any pickle protocol but 2, then its safe loader fails on protocol 4:
    one error of ours, no warning."""
    path = tmp_path / "params.pkl"
    torch.save(torch.load(rlpyt_snapshot, weights_only=True), path, pickle_protocol=4)
    for result in _outcome(path):
        assert isinstance(result, snap.NotASnapshotError)
        assert "pickled with a protocol other than torch's 2" in str(result)


class _Call:
    """A pickled call: what a malicious pickle (or one of rlpyt's objects) asks for on load."""

    def __init__(self, function: Callable, argument: str) -> None:
        self.function, self.argument = function, argument

    def __reduce__(self):
        return (self.function, (self.argument,))


@pytest.mark.parametrize("function, name", [(exec, "exec"), (shutil.rmtree, "shutil.rmtree")])
def test_only_a_refused_global_is_called_unsafe(tmp_path: Path, function: Callable,
                                                name: str) -> None:
    path = tmp_path / "params.pkl"
    torch.save({"itr": 1, "cum_steps": 4, "x": _Call(function, "nothing")}, path)
    for result in _outcome(path):
        assert isinstance(result, snap.UnsafeSnapshotError), result
        assert f"the file pickles {name}, which would run code on load" in str(result)
        _assert_sentences(path, result)


def test_a_pickle_naming_a_class_not_installed_here_is_still_unsafe(tmp_path: Path) -> None:
    """An rlpyt object pickled whole (what a careless save does) names rlpyt's class: refused
    as code-carrying even where rlpyt is not installed."""
    path = tmp_path / "params.pkl"
    path.write_bytes(b"\x80\x02crlpyt.utils.collections\nAttrDict\nq\x00)\x81q\x01.")
    for result in _outcome(path):
        assert isinstance(result, snap.UnsafeSnapshotError), result
        assert "pickles rlpyt.utils.collections.AttrDict, which would run code" in str(result)


def test_a_flipped_byte_in_a_torch_name_is_damage_not_intent(
        rlpyt_snapshot: Path, tmp_path: Path) -> None:
    data = rlpyt_snapshot.read_bytes()
    path = tmp_path / "params.pkl"
    for name, damaged in ((b"ctorch._utils\n", b"ctkrch._utils\n"),
                          (b"\n_rebuild_tensor_v2\n", b"\n_rebuild_tensor_w2\n"),
                          (b"ccollections\nOrderedDict\n", b"ccollections\nOrderedDicu\n")):
        assert data.count(name) == 1
        path.write_bytes(data.replace(name, damaged))
        for result in _outcome(path):
            assert isinstance(result, snap.NotASnapshotError), (damaged, result)


def _volume(rlpyt_run_dir: Path, garbage: bytes) -> Path:
    """The rlpyt run plus a run beside it whose params.pkl is ``garbage``."""
    broken = rlpyt_run_dir / "zz_broken" / "params.pkl"
    broken.parent.mkdir()
    broken.write_bytes(garbage)
    return broken


GARBAGE = {
    "base64": base64.b64encode(random.Random(3).randbytes(2000)),
    "text": b"hello\n",
    "random": random.Random(15).randbytes(4000),
}


def test_discovery_skips_garbage_with_one_log_line(rlpyt_run_dir: Path) -> None:
    for name, data in GARBAGE.items():
        broken = _volume(rlpyt_run_dir, data)
        logged: list[str] = []
        found = discovery.newest(discovery.candidates(rlpyt_run_dir), strict=False,
                                 log=logged.append)
        assert found is not None and found.path.parent.name == "pong_example1", name
        assert len(logged) == 1 and f"{broken}: not a snapshot file" in logged[0], logged
        with pytest.raises(snap.NotASnapshotError):
            discovery.newest(discovery.candidates(rlpyt_run_dir), strict=True, log=print)
        shutil.rmtree(broken.parent)


def _one_line(result, code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == (1 if code else 0), result.stderr
    return result.stderr


def test_train_skips_garbage_and_continues_from_the_readable_snapshot(
        rlpyt_run_dir: Path) -> None:
    broken = _volume(rlpyt_run_dir, GARBAGE["base64"])
    result = warmstart(CKPT_DIR=str(rlpyt_run_dir), **(FILES_ONLY_RUN | {"STEPS": "100"}))
    _one_line(result, 0)
    assert f"skipping unusable snapshot: {broken}: not a snapshot file" in result.stdout
    assert "pong_example1/params.pkl" in result.stdout


def test_commands_stop_with_one_line_when_nothing_readable_is_left(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    snapshot = ckpt / "params.pkl"
    for command, garbage in (("train", "base64"), ("inspect", "random"), ("eval", "text")):
        snapshot.write_bytes(GARBAGE[garbage])
        args = () if command == "train" else (command, str(snapshot))
        stderr = _one_line(warmstart(*args, CKPT_DIR=str(ckpt), **SHORT_RUN), 3)
        assert f"{snapshot}: not a snapshot file" in stderr, command
        assert sorted(p.name for p in ckpt.iterdir()) == ["params.pkl"]  # nothing written


def test_strict_snapshots_stops_at_garbage(rlpyt_run_dir: Path) -> None:
    broken = _volume(rlpyt_run_dir, GARBAGE["text"])
    stderr = _one_line(warmstart(CKPT_DIR=str(rlpyt_run_dir), STRICT_SNAPSHOTS="1",
                                 **SHORT_RUN), 3)
    assert f"{broken}: not a snapshot file" in stderr


@pytest.mark.parametrize("data", [b"[1, 2]", b'"text"', b"\xff\xfe garbage", b"{", b""],
                         ids=["list", "string", "not utf-8", "cut short", "empty"])
def test_a_damaged_manifest_is_no_manifest(tmp_path: Path, data: bytes) -> None:
    (tmp_path / MANIFEST).write_bytes(data)
    assert read_manifest(tmp_path) is None


@pytest.mark.parametrize("meta", [b"[1]", b'{"format": 1}', b"\xff\xfe", b"{"],
                         ids=["list", "fields missing", "not utf-8", "cut short"])
def test_a_damaged_resume_state_is_one_snapshot_error(tmp_path: Path, meta: bytes) -> None:
    path = tmp_path / resume_state.file_name(4)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(resume_state.META, meta)
    with pytest.raises(snap.SnapshotError, match="unreadable resume state"):
        resume_state.ResumeState(path)
    path.write_bytes(GARBAGE["random"])
    with pytest.raises(snap.SnapshotError, match="unreadable resume state"):
        resume_state.ResumeState(path)


def test_resuming_a_run_with_a_damaged_progress_csv_is_one_line(tmp_path: Path) -> None:
    settings = FILES_ONLY_RUN | {"STEPS": "100", "RUN_NAME": "job", "CKPT_DIR": str(tmp_path)}
    assert warmstart(**settings).returncode == 0
    (tmp_path / "job" / PROGRESS).write_bytes(GARBAGE["random"])
    stderr = _one_line(warmstart(**settings), 7)
    assert f"{tmp_path / 'job' / PROGRESS}: not a progress.csv this trainer can read" in stderr
