"""A test volume: a FUSE passthrough over a backing folder that can pause one operation.

    python tests/fusefs.py BACKING MOUNTPOINT [--slow-rename SECONDS]
    python tests/fusefs.py BACKING MOUNTPOINT --object-store [--no-overwrite] [--no-delete]

Every call is done on the backing folder, so the mount behaves as a local disk does, except:
``--slow-rename`` makes the rename of a file over 1 MB return SECONDS after it completed (an
object store's FUSE mount, s3fs say, renames by a server-side copy that takes time with the
object's size: a caller killed meanwhile leaves the rename done), and a pause, armed from the
test, holds one chosen step until the test says ``go``.

A *step* is one call that changes the volume: create, mkdir, unlink, rmdir, rename, fsync,
fsyncdir, truncate, link, symlink, chmod, and a file's first write after its creation (the
rest of its writes belong to that step). A step is named ``OP NAME``: NAME is the file's own
name (``OLD>NEW`` for a rename), a temp name (``.<name>.tmp-<pid>-<serial>``) without its pid and serial, so a
step reads the same in every process.

``--object-store`` makes the mount behave as Mountpoint for S3 does (its doc/SEMANTICS.md,
``ObjectStore``): no rename (ENOSYS), no append, no link, symlink or chmod; a file opened for
writing is new (``create``) or replaced (``O_TRUNC``; ``--no-overwrite`` refuses that, as
Mountpoint without --allow-overwrite does), any other open for writing is EPERM; writes are
sequential; what is written is staged and published when the file is closed (``publish NAME``,
a step), so readers see the old object until then, and a writer killed mid-write publishes
what it had written. ``--no-delete`` refuses unlink (Mountpoint without --allow-delete). Steps
there are ``create``, ``truncate`` (an open that replaces), ``write`` and ``publish``; names
drop what differs between processes (``itr_N.pkl``, ``resume-itr_N.npz``). On both kinds of mount a manifest version
is named ``manifest.v.json``.

Control, one line each on stdin:
    pause ANCHOR N OP NAME K   after the N-th rename whose source is named ANCHOR (on an
                               object store: the N-th publish of ANCHOR), hold the
                               K-th step ``OP NAME`` that follows once it is done, and print
                               ``paused OP NAME`` (other steps, a TensorBoard writer's
                               say, do not count)
    go                         let the held step return
    trace on|off               print every step as ``step OP NAME``
    stall on|off               from now until ``stall off`` every call blocks before it is
                               done (a network volume whose server stopped answering); the
                               trace and the other commands still work
    fail ERRNO N [STEP]        the next N calls that change the volume (each write counts, not
                               only a file's first) fail with ERRNO (EIO, ENOTCONN...) before
                               they are done; with STEP, only calls whose ``OP NAME`` contains
                               it (``manifest.json``: a lease renewal then takes none;
                               ``rename .warmstart-probe``); N 0 ends it
    fail-open ERRNO N [PATH]   the same for the next N opens of files whose path in the
                               volume contains PATH (``run_1/params.pkl``): a reader's outage;
                               prints ``armed``
    fail-read ERRNO N PATH [FROM TO]  the same for the next N reads of a file already open (a
                               page of a memory map too) that touch bytes FROM to TO (all, by
                               default); prints ``armed``
    settle                     print ``settled`` once no file is open for writing (object
                               store: a killed writer's files are published at their release,
                               which the kernel sends after the process is gone)
On stdout: ``ready`` once mounted, then the lines above. A process that is sent SIGKILL while a
step is held dies when it returns: the kill lands right after that step, and before the next.
The two mounts of one backing folder share no locks (``flock`` is local to a mount), as two
nodes' mounts of one network volume do not.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import tempfile
import threading
import time

from fuse import FUSE, FuseOSError, Operations

_TEMP = re.compile(r"(\.tmp-)\d+-\d+$")
_CHANGES = frozenset({"create", "mkdir", "unlink", "rmdir", "rename", "fsync", "fsyncdir",
                      "truncate", "link", "symlink", "chmod", "write"})


_VERSION = re.compile(r"^manifest\.v\d+-\d+\.json$")


def _name(path: str) -> str:
    return _VERSION.sub("manifest.v.json", _TEMP.sub(r"\1", os.path.basename(path)))


class Volume(Operations):
    def __init__(self, backing: str, slow_rename: float) -> None:
        self.backing = os.path.realpath(backing)
        self.slow_rename = slow_rename
        self._mutex = threading.Lock()
        self._out = threading.Lock()
        self._trace = False
        self._written: set[str] = set()  # files written since their creation
        self._armed: tuple[str, int, str, int] | None = None
        self._anchors = 0
        self._seen = 0
        self._go = threading.Event()
        self._flowing = threading.Event()  # cleared while stalled
        self._flowing.set()
        self._failing: tuple[int, int, str] | None = None  # errno, calls left, name part
        self._failing_opens: tuple[int, int, str] | None = None  # errno, calls left, path part
        self._failing_reads: tuple[int, int, str] | None = None  # errno, calls left, path part
        self._read_range = (0, 1 << 62)  # of a failing read

    # --- control ---------------------------------------------------------------------------
    def say(self, line: str) -> None:
        with self._out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def command(self, line: str) -> None:
        words = line.split()
        if words[:1] == ["pause"]:
            with self._mutex:
                self._armed = (words[1], int(words[2]), f"{words[3]} {words[4]}", int(words[5]))
                self._anchors, self._seen = 0, 0
                self._go.clear()
        elif words == ["go"]:
            self._go.set()
        elif words[:1] == ["trace"]:
            self._trace = words[1:] == ["on"]
        elif words[:1] == ["stall"]:
            (self._flowing.clear if words[1:] == ["on"] else self._flowing.set)()
        elif words[:1] in (["fail"], ["fail-open"], ["fail-read"]):
            with self._mutex:
                count = int(words[2])
                failing = ((getattr(errno, words[1]), count, " ".join(words[3:]))
                           if count > 0 else None)
                if words[0] == "fail-read":
                    failing = failing and (failing[0], count, words[3])
                    self._read_range = ((int(words[4]), int(words[5])) if len(words) > 4
                                        else (0, 1 << 62))
                which = {"fail": "_failing", "fail-open": "_failing_opens",
                         "fail-read": "_failing_reads"}[words[0]]
                setattr(self, which, failing)
            if words[0] != "fail":
                self.say("armed")

    def _gate(self, op: str, path: str) -> None:
        """Before every call: wait while stalled; fail it when a ``fail``, ``fail-open`` or
        ``fail-read`` says so."""
        self._flowing.wait()
        if op in _CHANGES:
            self._fail("_failing", f"{op} {_name(path)}")
        elif op == "open":
            self._fail("_failing_opens", path)

    def _fail(self, which: str, where: str) -> None:
        """Fail this call if the failure in ``which`` has calls left and names ``where``."""
        with self._mutex:
            failing = getattr(self, which)
            if failing is None or failing[2] not in where:
                return
            code, left, part = failing
            setattr(self, which, (code, left - 1, part) if left > 1 else None)
        raise FuseOSError(code)

    def _step(self, op: str, name: str) -> bool:
        """Count one step; True when it is the one to hold."""
        with self._mutex:
            if op == "write":
                if name in self._written:
                    return False
                self._written.add(name)
            elif op == "create":
                self._written.discard(name)
            if self._trace:
                self.say(f"step {op} {name}")
            if self._armed is None:
                return False
            anchor, occurrence, step, k = self._armed
            if self._anchors >= occurrence:
                if f"{op} {name}" == step:
                    self._seen += 1
                    if self._seen == k:
                        self._armed = None
                        return True
            elif op in ("rename", "publish") and name.split(">")[0] == anchor:
                self._anchors += 1
            return False

    def _done(self, op: str, name: str) -> None:
        """After a step is done on the backing folder: hold it if it is the chosen one."""
        if self._step(op, name):
            self.say(f"paused {op} {name}")
            self._go.wait()

    # --- passthrough ------------------------------------------------------------------------
    def _full(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def __call__(self, op, path, *args):
        self._gate(op, path)
        try:
            return super().__call__(op, path, *args)
        except OSError as err:
            if isinstance(err, FuseOSError):
                raise
            raise FuseOSError(err.errno or errno.EIO) from None

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        return {key: getattr(st, key) for key in (
            "st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size",
            "st_uid", "st_ino")}

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._full(path))]

    def readlink(self, path):
        return os.readlink(self._full(path))

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        return {key: getattr(st, key) for key in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)
        self._done("chmod", _name(path))

    def chown(self, path, uid, gid):
        os.lchown(self._full(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._full(path), times, follow_symlinks=False)

    def mknod(self, path, mode, dev):
        os.mknod(self._full(path), mode, dev)

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)
        self._done("mkdir", _name(path))

    def rmdir(self, path):
        os.rmdir(self._full(path))
        self._done("rmdir", _name(path))

    def unlink(self, path):
        os.unlink(self._full(path))
        self._done("unlink", _name(path))

    def symlink(self, target, source):
        os.symlink(source, self._full(target))
        self._done("symlink", _name(target))

    def link(self, target, source):
        os.link(self._full(source), self._full(target))
        self._done("link", _name(target))

    def rename(self, old, new):
        big = os.lstat(self._full(old)).st_size > 1 << 20
        os.rename(self._full(old), self._full(new))
        name = f"{_name(old)}>{_name(new)}"
        if self._step("rename", name):
            self.say(f"paused rename {name}")
            self._go.wait()
        elif self.slow_rename and big:
            time.sleep(self.slow_rename)

    def open(self, path, flags):
        return os.open(self._full(path), flags & ~os.O_CREAT | os.O_NOFOLLOW)

    def create(self, path, mode, fi=None):
        fd = os.open(self._full(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     mode)
        self._done("create", _name(path))
        return fd

    def read(self, path, size, offset, fh):
        low, high = self._read_range
        if offset < high and offset + size > low:
            self._fail("_failing_reads", path)
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        written = os.pwrite(fh, data, offset)
        self._done("write", _name(path))
        return written

    def truncate(self, path, length, fh=None):
        if fh is None:
            os.truncate(self._full(path), length)
        else:
            os.ftruncate(fh, length)
        self._done("truncate", _name(path))

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0

    def fsync(self, path, datasync, fh):
        (os.fdatasync if datasync else os.fsync)(fh)
        self._done("fsync", _name(path))

    def fsyncdir(self, path, datasync, fh):
        fd = os.open(self._full(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._done("fsyncdir", _name(path) or "/")

    def init(self, path):
        self.say("ready")


class ObjectStore(Volume):
    """The mount as Mountpoint for S3 behaves (the module's docstring)."""

    _DIFFER = ((re.compile(r"^itr_\d+\.pkl$"), "itr_N.pkl"),
               (re.compile(r"^resume-itr_\d+\.npz$"), "resume-itr_N.npz"),
               (re.compile(r"^(\.warmstart-probe-).*$"), r"\1"))

    def __init__(self, backing: str, *, overwrite: bool, delete: bool) -> None:
        super().__init__(backing, 0.0)
        self.overwrite, self.delete = overwrite, delete
        self._staging = tempfile.mkdtemp(prefix=".fusefs-staging-",
                                         dir=os.path.dirname(self.backing))
        # fd -> (path, staged file, name) until its release; published ones are in _published:
        # the fd stays open until then, so its number is not reused by another file meanwhile
        self._open: dict[int, tuple[str, str, str]] = {}
        self._published: set[int] = set()
        self._new: dict[str, str] = {}  # a new file's path -> its staged file, until published
        self._idle = threading.Condition()

    def command(self, line: str) -> None:
        if line.split() == ["settle"]:
            threading.Thread(target=self._settle, daemon=True).start()
        else:
            super().command(line)

    def _settle(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: not self._open)
        self.say("settled")

    def _object_name(self, path: str) -> str:
        name = _name(path)
        for pattern, replacement in self._DIFFER:
            name = pattern.sub(replacement, name)
        return name

    def _stage(self, path: str, op: str) -> int:
        staged = os.path.join(self._staging, f"{len(self._open)}-{threading.get_ident()}-"
                              f"{time.monotonic_ns()}")
        fd = os.open(staged, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        name = self._object_name(path)
        with self._idle:
            self._open[fd] = (path, staged, name)
        if op == "create":
            self._new[path] = staged
        with self._mutex:
            self._written.discard(name)  # its first write is a step again
        self._done(op, name)
        return fd

    def _publish(self, fh: int) -> None:
        """The upload completes: the object appears (or replaces the old one) whole."""
        with self._idle:
            entry = self._open.get(fh)
            if entry is None or fh in self._published:
                return
            self._published.add(fh)
        path, staged, name = entry
        os.replace(staged, self._full(path))
        self._new.pop(path, None)
        self._done("publish", name)

    def getattr(self, path, fh=None):
        staged = self._new.get(path)
        if staged is not None and not os.path.lexists(self._full(path)):
            st = os.lstat(staged)
            return {key: getattr(st, key) for key in (
                "st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size",
                "st_uid", "st_ino")}
        return super().getattr(path, fh)

    def open(self, path, flags):
        if flags & os.O_ACCMODE == os.O_RDONLY:
            return super().open(path, flags)
        if flags & os.O_APPEND:
            raise FuseOSError(errno.EINVAL)
        if not flags & os.O_TRUNC or not self.overwrite:
            raise FuseOSError(errno.EPERM)
        return self._stage(path, "truncate")

    def create(self, path, mode, fi=None):
        return self._stage(path, "create")

    def read(self, path, size, offset, fh):
        if fh in self._open:  # a file being uploaded cannot be read back
            raise FuseOSError(errno.EBADF)
        return super().read(path, size, offset, fh)

    def write(self, path, data, offset, fh):
        if fh not in self._open or fh in self._published:
            raise FuseOSError(errno.EBADF)
        if offset != os.fstat(fh).st_size:
            raise FuseOSError(errno.EINVAL)  # an upload is written in order
        written = os.pwrite(fh, data, offset)
        self._done("write", self._object_name(path))
        return written

    def truncate(self, path, length, fh=None):
        raise FuseOSError(errno.EPERM)

    def flush(self, path, fh):
        self._publish(fh)
        return 0

    def fsync(self, path, datasync, fh):
        self._publish(fh)

    def release(self, path, fh):
        if fh in self._open:
            self._publish(fh)  # a writer killed mid-write: what it wrote is published
            with self._idle:
                del self._open[fh]
                self._published.discard(fh)
                self._idle.notify_all()
        os.close(fh)
        return 0

    def unlink(self, path):
        if not self.delete:
            raise FuseOSError(errno.EPERM)
        os.unlink(self._full(path))
        self._done("unlink", self._object_name(path))

    def rename(self, old, new):
        raise FuseOSError(errno.ENOSYS)

    def link(self, target, source):
        raise FuseOSError(errno.ENOSYS)

    def symlink(self, target, source):
        raise FuseOSError(errno.ENOSYS)

    def chmod(self, path, mode):
        raise FuseOSError(errno.EPERM)

    def mknod(self, path, mode, dev):
        raise FuseOSError(errno.EPERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backing")
    parser.add_argument("mountpoint")
    parser.add_argument("--slow-rename", type=float, default=0.0)
    parser.add_argument("--object-store", action="store_true")
    parser.add_argument("--no-overwrite", action="store_true")
    parser.add_argument("--no-delete", action="store_true")
    args = parser.parse_args()
    volume = (ObjectStore(args.backing, overwrite=not args.no_overwrite,
                          delete=not args.no_delete)
              if args.object_store else Volume(args.backing, args.slow_rename))
    # an object store is told of O_TRUNC at open, not by a truncate before it
    options = {"atomic_o_trunc": True} if args.object_store else {}

    def control() -> None:
        for line in sys.stdin:
            volume.command(line)
        volume.command("go")  # the test is gone: hold nothing

    threading.Thread(target=control, daemon=True).start()
    # entry and attribute caches off: every process sees each change at once, as on one disk
    # big_writes: libfuse 2 otherwise passes a 58 MB snapshot on in 14,000 calls of 4 KB
    FUSE(volume, args.mountpoint, foreground=True, nothreads=False, entry_timeout=0,
         attr_timeout=0, negative_timeout=0, big_writes=True, **options)


if __name__ == "__main__":
    main()
