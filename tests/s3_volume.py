"""An S3 bucket mounted with s3fs, as a cluster's CSI driver mounts one, for real-process tests.

moto's server mode is the S3 endpoint: a real process on a free port, serving a bucket from
memory and logging one line per request, which is how a test counts what a run costs in
requests. Between s3fs and moto sits a TCP proxy the test can stop, so that the endpoint
refuses connections or stops answering mid-run (an outage), and start again.

moto pins an older python-dateutil than the trainer's image does, so it lives in a virtualenv of
its own, ``.venv/s3-server`` (`make venv` builds it from tests/requirements-s3.txt); it is a
separate process either way. Tests skip with the reason where s3fs, FUSE or moto is missing.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import clean_env, start_train

BUCKET = "ckpt"
MOTO_SERVER = Path(sys.prefix) / "s3-server" / "bin" / "moto_server"
START_S = 60
"""Only against a hang: how long moto and s3fs may take to come up."""

S3FS_OPTIONS = (
    # path-style requests (http://host:port/bucket/key): moto's bucket needs no DNS name
    "use_path_request_style",
    # s3fs's defaults wait 300 s for a connection and 120 s for an answer, and retry 5 times:
    # an outage would stall a call for many minutes before anything fails. With these a call
    # to an endpoint that refuses connections fails (EIO) after about 16 s, one to an endpoint
    # that does not answer after about 40 s (measured): an outage shows up as a stall, then
    # an I/O error the trainer sees. A shorter readwrite_timeout fails sound requests to a
    # busy moto (a 58 MB server-side copy, the rename of a snapshot, takes seconds).
    "connect_timeout=2",
    "readwrite_timeout=5",
    "retries=1",
    # no use_cache: files go straight to the bucket (through s3fs's temp files), nothing is
    # kept on local disk between calls, as a pod without a cache volume mounts a bucket
)


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proxy:
    """127.0.0.1:``port`` forwarded to 127.0.0.1:``upstream``, which the test can take down.

    ``refuse()`` closes the listening socket and every connection: new connections are refused,
    as from an endpoint that is down. ``hang()`` stops passing bytes: connections in flight and
    new ones stay open and unanswered, as behind a partitioned network. ``up()`` forwards again;
    connections held during a hang are closed then (their requests were lost on the way).
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.state = "down"
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self.up()

    def up(self) -> None:
        with self._lock:
            self._close_connections()
            if self._listener is None:
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self.port))
                listener.listen(64)
                self._listener = listener
                threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
            self.state = "up"
            self._flowing.set()

    def hang(self) -> None:
        with self._lock:
            self.state = "hang"
            self._flowing.clear()

    def refuse(self) -> None:
        with self._lock:
            self.state = "refuse"
            self._flowing.clear()
            if self._listener is not None:  # shutdown: close() alone leaves accept() waiting
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            self._close_connections()

    def close(self) -> None:
        self.refuse()
        self._flowing.set()  # lets paused pumps find their sockets closed and end

    def _close_connections(self) -> None:
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by refuse()
                return
            with self._lock:
                if self.state != "up":  # hang: hold it open, unanswered
                    self._open.append(client)
                    continue
                try:
                    server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                except OSError:
                    client.close()
                    continue
                server.settimeout(None)
                self._open += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                if self.state != "up":  # down while this waited: the bytes are lost
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|POST|HEAD|DELETE) \S+ HTTP/')
"""A request in moto's log (werkzeug's: a status other than 200 comes in terminal colours)."""


@dataclass
class S3Volume:
    """A bucket on moto's server, mounted with s3fs at ``mountpoint`` through ``proxy``."""

    mountpoint: Path
    proxy: Proxy
    moto_port: int
    moto_log: Path
    trainers: list[subprocess.Popen] = field(default_factory=list)

    def requests(self) -> collections.Counter[str]:
        """How many requests of each method moto has answered so far."""
        return collections.Counter(m.group(1) for m in REQUEST.finditer(
            self.moto_log.read_text(errors="replace")))

    def open_uploads(self) -> int:
        """Multipart uploads begun and neither completed nor aborted (asked of moto directly,
        not through the proxy): what a bucket's lifecycle rule would have to clean up."""
        url = f"http://127.0.0.1:{self.moto_port}/{BUCKET}?uploads"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read().count(b"<UploadId>")

    def start(self, log: Path, settings: dict[str, str]) -> subprocess.Popen:
        """`warmstart train` with CKPT_DIR on the bucket, in a process group of its own, its
        output to ``log``; killed at the end of the test if it still runs."""
        trainer = start_train(self.mountpoint, log, settings)
        self.trainers.append(trainer)
        return trainer


def _problem() -> str | None:
    if shutil.which("s3fs") is None:
        return "no s3fs (Debian: apt-get install s3fs; .ci/run installs it as root)"
    if shutil.which("fusermount") is None:
        return "no fusermount (Debian: the fuse package)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if not MOTO_SERVER.exists():
        return (f"no moto server at {MOTO_SERVER} (`make venv` installs it from "
                "tests/requirements-s3.txt)")
    return None


def _wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_S
    while not ready():
        if proc.poll() is not None:
            pytest.skip(f"{what} did not start (exit {proc.returncode}): "
                        f"{log.read_text(errors='replace').strip()[-500:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not up after {START_S}s:\n{log.read_text()}")
        time.sleep(0.1)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2):
            return True
    except OSError:
        return False


def _unmount(mountpoint: Path) -> None:
    """fusermount -u, or a lazy unmount where the mount is still busy, so no test leaves a
    mount behind whatever happened in it."""
    for args in (["-u"], ["-u", "-z"]):
        try:
            done = subprocess.run(["fusermount", *args, str(mountpoint)], capture_output=True,
                                  timeout=60, check=False)
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0 or not os.path.ismount(mountpoint):
            return


@contextlib.contextmanager
def s3_volume(tmp_path: Path) -> Iterator[S3Volume]:
    """moto's server, a proxy in front of it, a bucket, mounted with s3fs at
    ``tmp_path/bucket``; skips with the reason where that cannot be done here."""
    problem = _problem()
    if problem is not None:
        pytest.skip(f"needs s3fs over a local S3 server: {problem}")
    moto_port = free_port()
    moto_log = tmp_path / "moto.log"
    with moto_log.open("w") as out:
        moto = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(moto_port)],
                                stdout=out, stderr=subprocess.STDOUT, env=clean_env())
    proxy: Proxy | None = None
    s3fs: subprocess.Popen | None = None
    mountpoint = tmp_path / "bucket"
    mountpoint.mkdir()
    volume = None
    try:
        _wait_for("moto's server", lambda: _answers(moto_port), moto, moto_log)
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{moto_port}/{BUCKET}", method="PUT"), timeout=10).close()
        proxy = Proxy(moto_port)
        passwd = tmp_path / "s3fs-passwd"
        passwd.write_text("test-key:test-secret\n")  # moto takes any keys; s3fs wants 0600
        passwd.chmod(0o600)
        s3fs_log = tmp_path / "s3fs.log"
        options = ",".join((f"url=http://127.0.0.1:{proxy.port}", f"passwd_file={passwd}",
                            *S3FS_OPTIONS))
        with s3fs_log.open("w") as out:
            # -f: in the foreground, a child of the test, so teardown can always end it
            s3fs = subprocess.Popen(["s3fs", BUCKET, str(mountpoint), "-f", "-o", options],
                                    stdout=out, stderr=subprocess.STDOUT)
        _wait_for("s3fs", lambda: os.path.ismount(mountpoint), s3fs, s3fs_log)
        volume = S3Volume(mountpoint, proxy, moto_port, moto_log)
        yield volume
    finally:
        for trainer in volume.trainers if volume else ():
            if trainer.poll() is None:  # a failed check leaves none running
                os.killpg(trainer.pid, signal.SIGKILL)
            trainer.wait()
        if proxy is not None:
            proxy.up()  # what s3fs still holds can reach the bucket, and the unmount returns
        if s3fs is not None:
            _unmount(mountpoint)
            try:
                s3fs.wait(timeout=30)
            except subprocess.TimeoutExpired:
                s3fs.kill()
                s3fs.wait()
        if proxy is not None:
            proxy.close()
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()
            moto.wait()
