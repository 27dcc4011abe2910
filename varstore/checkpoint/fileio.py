"""The system calls of the write path, in one place.

``write_checkpoint`` and every file the Saver writes next to a checkpoint (the
meta file, the state file and its lock, through
``varstore.train.checkpoint_state``) create, write, sync, close and rename files
only through :func:`syscall`. Fault-injection tests replace this module's
``syscall`` attribute (``monkeypatch.setattr(fileio, "syscall", ...)``) to make
the k-th call fail with a full disk (ENOSPC) or an I/O error (EIO), or to make a
write short; nothing else in the write path is mocked.

``op`` names the call: ``"open"`` (a temporary file, O_CREAT | O_EXCL),
``"lock"`` (opening the directory's lock file), ``"write"``, ``"fsync"``,
``"close"``, ``"rename"`` and ``"fsync_dir"`` (after a rename).

>>> syscall("write", len, b"abc")  # calls fn(*args)
3
"""
from __future__ import annotations

import os
import stat
from collections.abc import Callable
from operator import attrgetter
from typing import Any

OPS = ("open", "lock", "write", "fsync", "close", "rename", "fsync_dir")

# Linux moves at most 0x7ffff000 bytes per write call, and readv/writev take at most
# IOV_MAX buffers (more is EINVAL).
MAX_SYSCALL = 0x7FFFF000
IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") and "SC_IOV_MAX" in os.sysconf_names \
    else 16
_nbytes = attrgetter("nbytes")


def iov_batch(views: list) -> list:
    """The leading views of ``views`` that one readv/writev may move: at most IOV_MAX of
    them and MAX_SYSCALL bytes (a single larger view is cut). Shared by the writer and the
    reader.

    >>> [v.nbytes for v in iov_batch([memoryview(b"ab"), memoryview(b"c")])]
    [2, 1]
    """
    head = views[:IOV_MAX]
    sizes = list(map(_nbytes, head))
    if sum(sizes) <= MAX_SYSCALL:
        return head
    batch: list = []
    size = 0
    for v, n in zip(head, sizes):
        if size + n > MAX_SYSCALL:
            if not batch:
                batch.append(v[:MAX_SYSCALL])
            break
        batch.append(v)
        size += n
    return batch


def syscall(op: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one system call of the write path: ``fn(*args)``. The seam tests replace."""
    return fn(*args)


def write_all(fd: int, data: Any) -> None:
    """Write all of ``data`` to ``fd`` (short writes are continued, as a full disk may cause)."""
    view = memoryview(data).cast("B")
    while view.nbytes:
        n = syscall("write", os.write, fd, view[:MAX_SYSCALL])
        view = view[n:]


def fsync_dir(directory: str) -> None:
    """fsync a directory, so that a rename in it survives a power loss (POSIX).

    Where a directory cannot be opened (Windows) there is nothing to do: the
    rename is already done.
    """
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        syscall("fsync_dir", os.fsync, dfd)
    finally:
        os.close(dfd)


def with_context(e: OSError, what: str) -> OSError:
    """The same error (same errno, so the same OSError subclass) with ``what`` said:
    which file was being written and what state it is left in."""
    strerror = e.strerror or str(e)
    return OSError(e.errno, f"{strerror} ({what})") if e.errno is not None else OSError(f"{strerror} ({what})")


def read_small_file(path: str, limit: int) -> bytes:
    """The bytes of the regular file ``path``, read with memory bounded by its size.

    At most ``limit + 1`` bytes are read (more than ``limit`` returned: the file is too
    large for what the caller expects). ``f.read(limit + 1)`` would allocate ``limit``
    bytes whatever the file's size; this allocates the file's size. Something that is
    not a regular file (a FIFO, a device, a directory) is never read: it raises
    IsADirectoryError or OSError(EINVAL) at once, without blocking. Other OSErrors
    (missing, permissions, I/O) propagate.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(22, "not a regular file", path)
        want = min(st.st_size, limit) + 1
        chunks, got = [], 0
        while got < want:  # the file may have grown since fstat: never past limit + 1
            chunk = os.read(fd, want - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            if got == want and got <= limit:
                want = min(want + (1 << 20), limit + 1)
        return b"".join(chunks)
    finally:
        os.close(fd)


__all__ = ["syscall", "write_all", "fsync_dir", "with_context", "read_small_file", "OPS"]
