"""Local files: temporary file, fsync, rename, fsync of the directory; reads by pread or mmap.

Every system call of the write path goes through ``fileio.syscall``, the seam the
fault-injection tests replace. A file's identity is its (device, inode), so
"remove if still ours" survives another process renaming a new file to the same name.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat as _stat
import threading
from collections.abc import Iterator
from operator import attrgetter
from typing import Any

import numpy as np

from devices.errors import DataLossError, FailedPreconditionError, NotFoundError

from .. import fileio
from ..format import temp_name, temp_target
from .base import CheckpointSink, FileId, Store

_nbytes = attrgetter("nbytes")

LOCK_NAME = ".checkpoint.lock"


class AtomicFile:
    """A temporary file beside ``path``: written through ``write``/``writev``, renamed over
    ``path`` by ``commit`` (fsynced first when ``fsync``), removed by ``abort``.

    As a context manager it commits on a clean exit and aborts on any exception
    (KeyboardInterrupt included), so the previous file at ``path`` is untouched
    unless the new one is complete. OSErrors keep their errno and say which file
    was written and what state it is in.
    """

    def __init__(self, path: str, fsync: bool = True, what: str = "file"):
        self.path, self.fsync, self.what = path, fsync, what
        self.directory = os.path.dirname(os.path.abspath(path))
        self.tmp = os.path.join(self.directory, temp_name(os.path.basename(path)))
        self.pos = 0
        try:
            self.fd = fileio.syscall("open", os.open, self.tmp,
                                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise self._context(e) from e

    def writev(self, views: list) -> int:
        """One vectored write (may be short: the caller continues, see ``writer._Out``)."""
        n = fileio.syscall("write", os.writev, self.fd, views)
        self.pos += n
        return n

    def write(self, data: Any) -> None:
        """Write all of ``data``."""
        view = memoryview(data).cast("B")
        fileio.write_all(self.fd, view)
        self.pos += view.nbytes

    def commit(self, stat_out: list | None = None) -> None:
        """fsync, close, rename over ``path``, fsync the directory. ``stat_out`` (a list)
        receives the file's ``os.stat_result``, taken before the rename."""
        try:
            if self.fsync:
                fileio.syscall("fsync", os.fsync, self.fd)
            if stat_out is not None:
                stat_out.append(os.fstat(self.fd))
            fd, self.fd = self.fd, -1
            fileio.syscall("close", os.close, fd)  # the descriptor is gone even if close fails
            fileio.syscall("rename", os.replace, self.tmp, self.path)
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError):
                raise self._context(e) from e
            raise
        if self.fsync:
            try:
                fileio.fsync_dir(self.directory)
            except OSError as e:
                raise fileio.with_context(e, f"{self.what} {self.path} was written and renamed into place, but "
                                             f"syncing its directory failed: it may not survive a power loss") from e

    def abort(self) -> None:
        """Close and remove the temporary file; ``path`` stays as it was."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)

    def _context(self, e: OSError) -> OSError:
        return fileio.with_context(e, f"writing {self.what} {self.path}; nothing was written there, "
                                      f"the file it replaces (if any) is untouched")

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
            if isinstance(exc, OSError):
                raise self._context(exc) from exc
            return
        self.commit()


class _LocalSink(CheckpointSink):
    def __init__(self, path: str, fsync: bool):
        self._file = AtomicFile(path, fsync, what="checkpoint")
        self.writev = self._file.writev

    def commit(self, size: int, index_checksum: int, stat_out: list | None = None) -> None:
        self._file.commit(stat_out)

    def abort(self) -> None:
        self._file.abort()


def read_error(path: str, e: Exception) -> Exception:
    """The varstore error for an OSError (or ValueError: a NUL in the path) opening or reading
    the checkpoint ``path``."""
    if not isinstance(e, OSError):
        return NotFoundError(f"Checkpoint {path!r} not found: {e}")
    if e.errno == errno.EIO:
        return DataLossError(f"{path}: I/O error while reading the checkpoint: {e}")
    if isinstance(e, FileNotFoundError):
        return NotFoundError(f"Checkpoint {path!r} not found (no such file)")
    if isinstance(e, IsADirectoryError):
        return NotFoundError(f"Checkpoint {path!r} not found: it is a directory, not a checkpoint file")
    return NotFoundError(f"Checkpoint {path!r} cannot be opened: {e.strerror or e}")


class LocalSource:
    """A local checkpoint file open for random reads: ``pread``, ``preadv`` (no seek, so
    safe between threads), or a read-only ``map()`` of the whole file. Errors name the file."""

    commit = None  # a local file is its own commit

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._mmap: mmap.mmap | None = None
        try:
            # O_NONBLOCK: a FIFO or device named by mistake must not block the open.
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except (OSError, ValueError) as e:  # ValueError: a NUL in the path
            raise read_error(path, e) from None
        try:
            st = os.fstat(self._fd)
        except OSError as e:
            self.close()
            raise read_error(path, e) from None
        if not _stat.S_ISREG(st.st_mode):
            self.close()
            what = "a directory" if _stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise NotFoundError(f"Checkpoint {path!r} not found: it is {what}, not a checkpoint file")
        self.size = st.st_size

    def replaced(self) -> bool:
        return False

    def _open_fd(self) -> int:
        fd = self._fd
        if fd < 0:
            raise FailedPreconditionError(f"CheckpointReader({self.path!r}) is closed")
        return fd

    def pread(self, n: int, offset: int) -> bytes:
        try:
            return os.pread(self._open_fd(), n, offset)
        except OSError as e:
            raise read_error(self.path, e) from None

    # preadv fills any writable C-contiguous buffers: numpy arrays as they are (CheckpointReader.read_many).
    takes_arrays = True

    def preadv(self, views: list, offset: int) -> int:
        """Fill ``views`` in order from ``offset``; returns the bytes filled (less at the end of the file)."""
        fd = self._open_fd()
        views = list(filter(_nbytes, views))
        filled, k = 0, 0
        while k < len(views):
            batch = fileio.iov_batch(views[k:k + fileio.IOV_MAX])  # stay under the per-call limits
            try:
                got = os.preadv(fd, batch, offset)
            except OSError as e:
                raise read_error(self.path, e) from None
            if got <= 0:
                break
            offset += got
            filled += got
            if got == sum(map(_nbytes, batch)) and batch[-1] is views[k + len(batch) - 1]:
                k += len(batch)
                continue
            while k < len(views) and got >= views[k].nbytes:  # a short read: go on from where it stopped
                got -= views[k].nbytes
                k += 1
            if got:
                views[k] = np.frombuffer(views[k], np.uint8)[got:]  # bytes, whatever the buffer's items
        return filled

    def map(self) -> mmap.mmap | None:
        """The whole file mapped read-only (shared by the arrays viewing it), None when it
        cannot be mapped (no address space, an odd filesystem): read instead."""
        with self._lock:
            if self._mmap is None:
                try:
                    mm = mmap.mmap(self._open_fd(), 0, access=mmap.ACCESS_READ)
                except (OSError, ValueError, OverflowError):
                    return None
                if len(mm) != self.size:
                    mm.close()
                    raise DataLossError(f"{self.path}: the file changed size since it was opened "
                                        f"({self.size} -> {len(mm)} bytes)")
                self._mmap = mm
            return self._mmap

    def close(self) -> None:
        """Release the file. Arrays viewing the mapping keep it alive until they go."""
        with self._lock:
            mm, self._mmap = self._mmap, None
            fd, self._fd = self._fd, -1
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # arrays still view it; it is unmapped when the last one goes
        if fd >= 0:
            os.close(fd)


class LocalStore(Store):
    local = True

    def parent(self, path: str) -> str:
        return os.path.dirname(os.path.abspath(path))

    def join(self, directory: str, name: str) -> str:
        return os.path.join(directory, name)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_checkpoint(self, path: str) -> bool:
        return os.path.isfile(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def mtime(self, path: str) -> float | None:
        try:
            return os.path.getmtime(path)
        except OSError:
            return None

    def file_id(self, path: str) -> FileId | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def read_small(self, path: str, limit: int) -> bytes:
        return fileio.read_small_file(path, limit)

    def open_source(self, path: str) -> LocalSource:
        return LocalSource(path)

    def listdir(self, directory: str) -> list[str]:
        try:
            return sorted(os.listdir(directory))
        except FileNotFoundError:
            return []

    def require_directory(self, path: str, doing: str) -> None:
        directory = self.parent(path)
        if not os.path.isdir(directory):
            raise NotFoundError(f"{doing}: cannot write {path!r}: directory {directory!r} does not exist")

    def atomic_file(self, path: str, fsync: bool = True, what: str = "file") -> AtomicFile:
        return AtomicFile(path, fsync, what)

    def replace(self, path: str, data: bytes, stat_out: list | None = None) -> None:
        f = AtomicFile(path, True)
        try:
            f.write(data)
        except BaseException as e:
            f.abort()
            if isinstance(e, OSError):
                raise f._context(e) from e
            raise
        f.commit(stat_out)

    def checkpoint_sink(self, path: str, fsync: bool = True) -> CheckpointSink:
        return _LocalSink(path, fsync)

    @contextlib.contextmanager
    def lock(self, directory: str) -> Iterator[None]:
        path = os.path.join(directory, LOCK_NAME)
        try:
            fd = fileio.syscall("lock", os.open, path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise fileio.with_context(e, f"opening the lock file {path}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def remove(self, path: str) -> bool:
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False

    def remove_if(self, path: str, file_id: FileId | None) -> bool:
        """Another process may rename a new file of the same name into place at any moment,
        so the file is first moved aside (atomically) and checked there; a file that turns
        out not to be ours is linked back, unless an even newer one has landed."""
        if file_id is None:
            return self.remove(path)
        aside = os.path.join(os.path.dirname(path), temp_name(os.path.basename(path)))
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        try:
            if self.file_id(aside) != file_id:
                try:
                    os.link(aside, path)  # never replaces: a newer file at path stays
                except FileExistsError:
                    pass
                except OSError:  # no hard links here: put it back the plain way
                    os.rename(aside, path)
                return False
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(aside)

    def remove_checkpoint(self, path: str, file_id: FileId | None = None) -> bool:
        from ..shards import remove_shards
        if not self.remove_if(path, file_id):
            return False
        remove_shards(path)
        return True

    def sweep(self, directory: str) -> list[str]:
        """Temporary files whose writer (a process on this machine) is gone."""
        gone = []
        for name in self.listdir(directory):
            t = temp_target(name)
            if t is not None and not _pid_alive(t[1]):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
                    gone.append(name)
        return gone


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
