"""The state file ``checkpoint``: latest path and retained paths, oldest first, in TF's text form.

    model_checkpoint_path: "model.ckpt-1000"
    all_model_checkpoint_paths: "model.ckpt-900"
    all_model_checkpoint_paths: "model.ckpt-1000"
    all_model_checkpoint_timestamps: 1764140000.5
    all_model_checkpoint_timestamps: 1764140100.25
    last_preserved_timestamp: 1764130000.0

Paths in the same directory are stored relative, so the directory can be
moved. The file is replaced atomically (temp file, fsync, rename, fsync of
the directory) under a lock, so two writers never leave it torn.

In a directory at an fsspec URL the state file is one object, replaced by a
single PUT (atomic on object stores), and it names only committed checkpoints:
``latest_checkpoint`` takes the newest listed one whose commit marker matches it.
There is no lock there: give each remote directory one writer.

>>> import tempfile, varstore as tf
>>> tf.train.latest_checkpoint(tempfile.mkdtemp()) is None
True
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from devices.errors import DataLossError, OpError

from ..checkpoint import remote

STATE_FILENAME = "checkpoint"
_MAX_STATE_BYTES = 16 << 20  # a state file is a few lines; anything bigger is not one
_LINE = re.compile(r'\s*([a-z_]+)\s*:\s*(?:"((?:[^"\\]|\\.)*)"|([-+0-9.eE]+|inf|nan))\s*\Z')


@dataclass
class CheckpointState:
    """Parsed state file (TF's CheckpointState fields)."""

    model_checkpoint_path: str = ""
    all_model_checkpoint_paths: list[str] = field(default_factory=list)
    all_model_checkpoint_timestamps: list[float] = field(default_factory=list)
    last_preserved_timestamp: float = 0.0


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s)


def format_state(state: CheckpointState, directory: str) -> str:
    here = remote.parent(remote.join(directory, "x"))

    def rel(p: str) -> str:
        # Relative when the checkpoint sits in this directory: the directory can be moved.
        return os.path.basename(p) if remote.parent(p) == here else p

    lines = [f'model_checkpoint_path: "{_escape(rel(state.model_checkpoint_path))}"']
    lines += [f'all_model_checkpoint_paths: "{_escape(rel(p))}"' for p in state.all_model_checkpoint_paths]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in state.all_model_checkpoint_timestamps]
    lines.append(f"last_preserved_timestamp: {state.last_preserved_timestamp!r}")
    return "\n".join(lines) + "\n"


def parse_state(text: str, directory: str, filename: str = STATE_FILENAME) -> CheckpointState:
    """Parse a state file's text; relative paths are resolved against ``directory``."""
    st = CheckpointState()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise DataLossError(f"{filename}: line {n} is not 'key: value': {line[:80]!r}")
        key, sval, nval = m.groups()
        if key in ("model_checkpoint_path", "all_model_checkpoint_paths"):
            if sval is None:
                raise DataLossError(f"{filename}: line {n}: {key} expects a quoted path")
            p = _unescape(sval)
            p = p if os.path.isabs(p) or remote.is_url(p) else remote.join(directory, p)
            if key == "model_checkpoint_path":
                st.model_checkpoint_path = p
            else:
                st.all_model_checkpoint_paths.append(p)
        elif key in ("all_model_checkpoint_timestamps", "last_preserved_timestamp"):
            try:
                t = float(nval)
            except (TypeError, ValueError):
                raise DataLossError(f"{filename}: line {n}: {key} expects a number") from None
            if key == "last_preserved_timestamp":
                st.last_preserved_timestamp = t
            else:
                st.all_model_checkpoint_timestamps.append(t)
        # Unknown keys are skipped: a newer writer may add fields.
    if st.all_model_checkpoint_timestamps and \
            len(st.all_model_checkpoint_timestamps) != len(st.all_model_checkpoint_paths):
        st.all_model_checkpoint_timestamps = []  # TF drops mismatched timestamps too
    return st


def get_checkpoint_state(checkpoint_dir: str, latest_filename: str | None = None) -> CheckpointState | None:
    """The directory's state, or None when it has no state file.

    A corrupt state file raises DataLossError naming it.
    """
    from ..checkpoint.fileio import read_small_file
    path = remote.join(remote.local_path(os.fspath(checkpoint_dir)), latest_filename or STATE_FILENAME)
    try:
        data = read_small_file(path, _MAX_STATE_BYTES)
    except FileNotFoundError:
        return None
    except OpError:  # a store that cannot be reached or refuses access: not a corrupt file
        raise
    except IsADirectoryError:
        raise DataLossError(f"{path}: expected a state file, found a directory") from None
    except (OSError, ValueError) as e:  # not a regular file, permissions, an I/O error; ValueError: a NUL
        raise DataLossError(f"{path}: cannot read the state file: {getattr(e, 'strerror', None) or e}") from None
    if len(data) > _MAX_STATE_BYTES:
        raise DataLossError(f"{path}: {len(data)}+ bytes is too large for a state file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataLossError(f"{path}: not UTF-8 text, so not a checkpoint state file") from None
    st = parse_state(text, remote.parent(path), path)
    return st if st.model_checkpoint_path else None


def latest_checkpoint(checkpoint_dir: str, latest_filename: str | None = None) -> str | None:
    """Path of the newest checkpoint listed in ``checkpoint_dir``'s state file that exists, else None.

    ``saver.restore(sess, tf.train.latest_checkpoint("runs/1"))``
    """
    st = get_checkpoint_state(checkpoint_dir, latest_filename)
    if st is None:
        return None
    if _present(st.model_checkpoint_path):
        return st.model_checkpoint_path
    # The newest one is gone (deleted by hand?): fall back to the newest retained that exists.
    for p in reversed(st.all_model_checkpoint_paths):
        if _present(p):
            return p
    return None


def _present(path: str) -> bool:
    """A local checkpoint file that exists, or a committed one at a URL."""
    return remote.is_committed(path) if remote.is_url(path) else os.path.isfile(path)


def fsync_dir(directory: str) -> None:
    from ..checkpoint import fileio
    fileio.fsync_dir(directory)


def write_text_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: temp file, fsync, rename, fsync of the directory."""
    write_text_atomic_bytes(path, text.encode("utf-8"))


def write_text_atomic_bytes(path: str, data: bytes, stat_out: list | None = None) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync of the directory.

    On any error before the rename the temporary file is removed and ``path`` is
    untouched; the OSError (a full disk, an I/O error) keeps its errno and names
    ``path``. Every system call goes through ``varstore.checkpoint.fileio``.
    ``stat_out``, a list, receives the file's ``os.stat_result`` (taken before the rename).
    """
    from ..checkpoint import fileio
    from ..checkpoint.format import temp_name
    if remote.is_url(path):
        remote.write_small(path, data)  # one PUT: the object is old or new, never torn
        return
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, temp_name(os.path.basename(path)))
    fd = -1
    try:
        fd = fileio.syscall("open", os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                            0o666)
        fileio.write_all(fd, data)
        fileio.syscall("fsync", os.fsync, fd)
        if stat_out is not None:
            stat_out.append(os.fstat(fd))
        fd, closing = -1, fd
        fileio.syscall("close", os.close, closing)  # closed even when close reports an error
        fileio.syscall("rename", os.replace, tmp, path)
    except BaseException as e:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise fileio.with_context(e, f"writing {path}; it was left as it was") from e
        raise
    try:
        fileio.fsync_dir(directory)
    except OSError as e:
        raise fileio.with_context(e, f"{path} was replaced, but syncing its directory failed: "
                                     f"the change may not survive a power loss") from e


def update_checkpoint_state(directory: str, state: CheckpointState, latest_filename: str | None = None) -> None:
    write_text_atomic(remote.join(directory, latest_filename or STATE_FILENAME), format_state(state, directory))


@contextlib.contextmanager
def directory_lock(directory: str) -> Iterator[None]:
    """An exclusive advisory lock on the directory's state (two processes saving into one directory).

    The Saver holds it while it reads the state file, writes the new one and deletes
    the checkpoints retention dropped, so concurrent writers never lose each other's
    checkpoints from the state file and never delete what it names.
    """
    from ..checkpoint import fileio
    if remote.is_url(directory):  # object stores have no locks: one writer per remote directory
        yield
        return
    path = os.path.join(directory, ".checkpoint.lock")
    try:
        fd = fileio.syscall("lock", os.open, path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        raise fileio.with_context(e, f"opening the lock file {path}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock
