"""Where a snapshot came from: the software that wrote it, recorded next to every snapshot."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from . import __version__

_PACKAGES = ("torch", "numpy", "ale-py", "opencv-python-headless", "psutil", "rlpyt")


def versions() -> dict[str, str]:
    """Versions of Python, the project and every library that shapes training results.

    ``IMAGE_REVISION`` (set by the image build) names the source commit; outside an
    image it is absent and the project version alone identifies the code.
    """
    found = {"python": platform.python_version(), "warmstart": __version__}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    revision = os.environ.get("IMAGE_REVISION")
    if revision:
        found["image_revision"] = revision
    return found
