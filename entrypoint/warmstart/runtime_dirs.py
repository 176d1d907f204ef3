"""Writable homes for what our dependencies cache, on a read-only root filesystem and any uid.

A restricted pod (``readOnlyRootFilesystem``, OpenShift's arbitrary uid in group 0) has no
usable ``HOME``: with a read-only root it cannot be written (matplotlib then prints a warning
and makes a temporary config folder; torch names its compile cache after a user that has no
passwd entry), and a uid without a passwd entry may get the working directory as ``HOME``
(podman does), which in the image is the checkpoint volume, where ``.cache`` and ``.config``
would then land; so would anything that falls back to ``tempfile`` with an unwritable ``/tmp``.
So before any of them is imported, when ``HOME`` cannot be written or is on the checkpoint
volume (``CKPT_DIR``), every cache and config variable they read that is
still unset points into one private folder in the first writable temporary directory
(``TMPDIR``, ``/tmp``, ``/var/tmp``, ``/dev/shm``; never the working directory or the volume),
removed again at exit; ``HOME`` itself moves there too. An ordinary ``HOME`` (a laptop, ``make
train``) changes nothing, and no other variable a user set is touched.

Deciding reads the volume (where ``CKPT_DIR``'s links lead): a volume that stops answering
would hang the command there, before it can say anything. So the decision runs on a thread of
its own and is given ``ANSWER_WAIT_S``; without an answer nothing is changed, and the
command's own volume checks then say that the volume stalls (``checkpoint.volume_io``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import MutableMapping
from pathlib import Path

TEMP_CANDIDATES = ("/tmp", "/var/tmp", "/dev/shm")
ANSWER_WAIT_S = 2.0
"""How long the file system may take to say where the volume and the temporary folders are."""

# Variable -> sub-folder of the private folder ("" for the folder itself).
CACHE_VARIABLES = {
    "HOME": "home",
    "XDG_CACHE_HOME": "cache",
    "XDG_CONFIG_HOME": "config",
    "MPLCONFIGDIR": "matplotlib",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
    "TRITON_CACHE_DIR": "triton",
    "TORCH_HOME": "torch",
    "TMPDIR": "",
}


def _resolved(path: str) -> Path:
    """``path`` with its links resolved as far as they go: a link loop (a CKPT_DIR pointing at
    itself) is left as it is, for the command to refuse in its own words, never an error here."""
    return Path(os.path.realpath(path))


def _writable(path: str | os.PathLike[str]) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def _volume(environ: MutableMapping[str, str]) -> list[Path]:
    """The checkpoint volume, as the environment names it (the image sets CKPT_DIR)."""
    ckpt = environ.get("WARMSTART_CKPT_DIR") or environ.get("CKPT_DIR")
    return [_resolved(ckpt)] if ckpt else []


def _on_volume(path: str, volumes: list[Path]) -> bool:
    resolved = _resolved(path)
    return any(resolved == v or (v != Path("/") and resolved.is_relative_to(v))
               for v in volumes)


def _temp_root(environ: MutableMapping[str, str], volumes: list[Path]) -> str | None:
    """The first writable temporary directory that is neither on the volume nor the working
    directory (where ``tempfile`` falls back to)."""
    cwd = _resolved(os.getcwd())
    for candidate in (environ.get("TMPDIR"), *TEMP_CANDIDATES):
        if (candidate and _writable(candidate) and not _on_volume(candidate, volumes)
                and _resolved(candidate) != cwd):
            return candidate
    return None


def _needed_root(environ: MutableMapping[str, str]) -> str | None:
    """The temporary directory for a private folder when ``HOME`` is not writable or is on the
    volume; None when nothing needs changing (or nowhere could). Reads only."""
    home = environ.get("HOME") or os.path.expanduser("~")
    volume = _volume(environ)
    if _writable(home) and not _on_volume(home, volume):
        return None
    return _temp_root(environ, volume)


def _within(seconds: float, environ: MutableMapping[str, str]) -> str | None:
    """``_needed_root(environ)`` if it returns within ``seconds``, else None (the thread is
    left blocked where the file system holds it; it is a daemon)."""
    answer: list[str | None] = []

    def decide() -> None:
        try:
            answer.append(_needed_root(environ))
        except OSError:  # a working directory removed under us: change nothing
            answer.append(None)

    thread = threading.Thread(target=decide, daemon=True, name="warmstart-runtime-dirs")
    thread.start()
    thread.join(seconds)
    return answer[0] if answer else None


def prepare(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Point unset cache/config variables into a private temporary folder when ``HOME`` is not
    writable or is on the volume; returns that folder, or None when nothing needed changing
    (or nowhere could, or the file system did not answer within ``ANSWER_WAIT_S``)."""
    root = _within(ANSWER_WAIT_S, environ)
    if root is None:
        return None
    private = Path(tempfile.mkdtemp(prefix="warmstart-", dir=root))
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    for variable, sub in CACHE_VARIABLES.items():
        if variable == "HOME" or not environ.get(variable):
            folder = private / sub
            folder.mkdir(mode=0o700, exist_ok=True)
            environ[variable] = str(folder)
    tempfile.tempdir = None  # let tempfile read TMPDIR again
    return private
