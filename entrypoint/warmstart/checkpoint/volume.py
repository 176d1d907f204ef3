"""Checks on the checkpoint volume before training: it exists and there is room.

Each problem is one ``VolumeError`` line saying what to do, raised before anything is written,
so a misconfigured mount costs seconds, not a training job. What the volume can write (rename,
overwrite, append, delete) is probed later, by ``capabilities``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import VolumeError

SNAPSHOTS_OF_ROOM = 2
"""A new snapshot is written beside the previous one before it replaces it: room for two."""


def snapshot_bytes(n_actions: int, dueling: bool) -> int:
    """Size of one params.pkl: model, target and Adam's two moments, all float32, plus slack."""
    conv = 32 * 4 * 8 * 8 + 32 + 64 * 32 * 4 * 4 + 64 + 64 * 64 * 3 * 3 + 64
    hidden = 6912 * 512 + 512
    head = (2 * hidden + 512 + 1 + 512 * n_actions + 1) if dueling else (
        hidden + 512 * n_actions + n_actions)
    return 4 * 4 * (conv + head) + (1 << 20)


def folder(ckpt_dir: Path) -> Path:
    """``ckpt_dir`` when it is a folder; else one ``VolumeError`` line (a link loop or a broken
    link included: resolving them is never an error of its own)."""
    if ckpt_dir.is_dir():
        return ckpt_dir
    if ckpt_dir.is_symlink() and not ckpt_dir.exists():
        raise VolumeError(f"CKPT_DIR={ckpt_dir} is a link that leads nowhere (broken, or a "
                          "loop); point it at the checkpoint volume.")
    if not ckpt_dir.exists():
        raise VolumeError(f"CKPT_DIR={ckpt_dir} does not exist; create it or mount the "
                          "checkpoint volume there.")
    raise VolumeError(f"CKPT_DIR={ckpt_dir} is not a folder.")


def check(ckpt_dir: Path, *, n_actions: int, dueling: bool) -> None:
    """Raise ``VolumeError`` unless ``ckpt_dir`` is a folder with room for two snapshots. Reads
    only: whether it can be written, and how, is probed once the run's own checks have passed
    (``capabilities``)."""
    folder(ckpt_dir)
    need = SNAPSHOTS_OF_ROOM * snapshot_bytes(n_actions, dueling)
    free = shutil.disk_usage(ckpt_dir).free
    if free < need:
        raise VolumeError(f"CKPT_DIR={ckpt_dir} has {free / 1e6:.1f} MB free; a snapshot needs "
                          f"room for two ({need / 1e6:.0f} MB). Free space or use a bigger volume.")
