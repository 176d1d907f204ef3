"""Open a file from the volume only when it can be read safely: a regular file, of bounded size.

Anyone may have written the checkpoint volume, and a name such as ``params.pkl`` may be a FIFO
(an ``open`` that waits forever for a writer, and a SIGTERM that cannot end it), a link to
``/dev/zero`` or ``/dev/urandom`` (a read that never ends, until the kernel kills the process
for memory), a socket, a folder or a link loop. So every reader of the volume opens through
here: ``open`` without blocking, then ``fstat`` on the opened descriptor (the file that was
opened, not whatever the name points at a moment later), then a read of at most ``limit``
bytes. Anything else is an ``UnreadableFile`` saying what the name really is; a missing file
stays ``FileNotFoundError``, so a caller can tell "absent" from "not usable".

An error of an outage (EIO, ENOTCONN, a timeout: ``volume_errors.TRANSIENT``), opening or
reading, is not an OSError here but ``VolumeUnavailableError`` (exit 10): it says nothing about
the file, so no reader may take it for damage or absence; readers that read further through
an ``open_fd`` descriptor (snapshots) use ``volume_errors.raise_if_outage`` the same way.

JSON is parsed with a depth bound checked before the parser recurses: a record nested 100,000
deep is damage, not a ``RecursionError``.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

from .volume_errors import raise_if_outage
from .volume_io import VOLUME

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30

JSON_LIMIT = 16 * MB
"""A manifest or params.json: kilobytes (a manifest grows by one line per snapshot kept)."""
CSV_LIMIT = 256 * MB
"""progress.csv: a row of a few hundred bytes per log point; 50M steps logged every 1,000
steps is about 25 MB."""
SNAPSHOT_LIMIT = 4 * GB
"""A snapshot: 58 MB for rlpyt's AtariDqnModel with Adam's state, read whole into memory."""
RESUME_STATE_LIMIT = 1 << 40
"""A resume state holds the replay buffer (gigabytes); it is streamed, never read whole."""
MAX_JSON_DEPTH = 64
"""Our manifest nests 4 deep, rlpyt's params.json about as much."""

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class UnreadableFile(OSError):
    """The name exists but is not a regular file of a readable size, or cannot be opened;
    ``why`` says what it is in a few words ("a FIFO (named pipe)", "a link loop")."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(None, why, str(path))
        self.why = why

    def __str__(self) -> str:  # not OSError's "[Errno None] why: path"
        return f"{self.filename}: {self.why}"


def _what(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _size(n: int) -> str:
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / MB:.1f} MB"


def open_fd(path: Path, *, limit: int, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A descriptor of the regular file ``path`` (links followed), no larger than ``limit``.

    Never blocks: ``O_NONBLOCK`` makes opening a FIFO return at once (and the check below
    refuses it); for a regular file the flag changes nothing. ``flags`` may add ``O_CREAT``
    (with ``mode``) or ``O_NOFOLLOW``. Raises UnreadableFile for what is there but is not a
    regular file of a sane size; other OSErrors (FileNotFoundError, PermissionError) as
    ``os.open`` raises them; VolumeUnavailableError for an outage's.
    """
    VOLUME.note("read", path)  # during a start: a stall names this file
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode)
    except OSError as err:
        raise_if_outage(path, err)
        if err.errno == errno.ELOOP:
            raise UnreadableFile(path, "a link loop (or a link where none may be)") from None
        if err.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing
            raise UnreadableFile(path, "a socket or another special file") from None
        if err.errno == errno.EISDIR:
            raise UnreadableFile(path, "a folder, not a regular file") from None
        raise  # missing, not permitted, ...: the caller's to say
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(path, f"{_what(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise UnreadableFile(path, f"{_size(info.st_size)}, more than the {_size(limit)} "
                                       "such a file can be")
    except BaseException as err:
        os.close(fd)
        if isinstance(err, OSError):
            raise_if_outage(path, err)
        raise
    return fd


def open_file(path: Path, *, limit: int, flags: int = os.O_RDONLY) -> BinaryIO:
    """``open_fd`` as a binary file object (for readers that stream: zip archives)."""
    return os.fdopen(open_fd(path, limit=limit, flags=flags), "rb")


def read_bytes(path: Path, *, limit: int, flags: int = os.O_RDONLY) -> bytes:
    """The whole regular file ``path``, at most ``limit`` bytes (a file that grew past the
    limit while being read is refused, not cut)."""
    with open_file(path, limit=limit, flags=flags) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as err:
            raise_if_outage(path, err)
            raise
    if len(data) > limit:
        raise UnreadableFile(path, f"more than the {_size(limit)} such a file can be")
    return data


def read_text(path: Path, *, limit: int) -> str:
    """``read_bytes`` decoded as UTF-8 (UnicodeDecodeError, a ValueError, when it is not)."""
    return read_bytes(path, limit=limit).decode()


_ESCAPE = re.compile(r"\\.", re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deep ``text``'s arrays and objects nest, found without recursion.

    Escaped characters go first, so every quote left opens or closes a string; brackets are
    counted outside strings only. Text that is not JSON gets a number too, and json.loads then
    refuses it.
    """
    outside = "".join(_ESCAPE.sub("", text).split('"')[::2])
    steps = (1 if c in "[{" else -1 for c in _BRACKET.findall(outside))
    return max(itertools.accumulate(steps, initial=0))


def loads(text: str | bytes) -> Any:
    """``json.loads`` refusing (ValueError) text nested deeper than MAX_JSON_DEPTH."""
    if isinstance(text, bytes):
        text = text.decode()
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested {depth} deep (at most {MAX_JSON_DEPTH})")
    return json.loads(text)


def read_json(path: Path, *, limit: int = JSON_LIMIT) -> Any:
    """A JSON file from the volume: FileNotFoundError when absent, UnreadableFile (an OSError)
    when not a regular file of a sane size, ValueError when not UTF-8 JSON of a sane depth."""
    return loads(read_text(path, limit=limit))
