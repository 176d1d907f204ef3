"""Writable homes for what our dependencies cache, on a read-only root filesystem and any uid.

A restricted pod (``readOnlyRootFilesystem``, OpenShift's arbitrary uid in group 0) has no
writable ``HOME``: matplotlib then prints a warning and makes a temporary config folder, torch
names its compile cache after a user that has no passwd entry, and anything that falls back to
``tempfile`` with an unwritable ``/tmp`` lands in the working directory, which in the image is
the checkpoint volume. So before any of them is imported, when ``HOME`` cannot be written, every
cache and config variable they read that is still unset points into one private folder in the
first writable temporary directory (``TMPDIR``, ``/tmp``, ``/var/tmp``, ``/dev/shm``; never the
working directory), removed again at exit; ``HOME`` itself moves there too. A writable
``HOME`` (a laptop, ``make train``) changes nothing, and no other variable a user set is touched.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

TEMP_CANDIDATES = ("/tmp", "/var/tmp", "/dev/shm")

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


def _writable(path: str | os.PathLike[str]) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def _temp_root(environ: MutableMapping[str, str]) -> str | None:
    """The first writable temporary directory that is not the working directory."""
    cwd = os.path.realpath(os.getcwd())
    for candidate in (environ.get("TMPDIR"), *TEMP_CANDIDATES):
        if candidate and _writable(candidate) and os.path.realpath(candidate) != cwd:
            return candidate
    return None


def prepare(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Point unset cache/config variables into a private temporary folder when ``HOME`` is not
    writable; returns that folder, or None when nothing needed changing (or nowhere could)."""
    home = environ.get("HOME") or os.path.expanduser("~")
    if _writable(home):
        return None
    root = _temp_root(environ)
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
