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

import os
import re
from dataclasses import dataclass, field

from devices.errors import DataLossError, OpError

from ..checkpoint.store import normalize, store_for

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
    store = store_for(directory)
    here = store.parent(store.join(directory, "x"))

    def rel(p: str) -> str:
        # Relative when the checkpoint sits in this directory: the directory can be moved.
        return os.path.basename(p) if store.parent(p) == here else p

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
            p = p if os.path.isabs(p) or not store_for(p).local else store_for(directory).join(directory, p)
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
    directory = normalize(checkpoint_dir)
    store = store_for(directory)
    path = store.join(directory, latest_filename or STATE_FILENAME)
    try:
        data = store.read_small(path, _MAX_STATE_BYTES)
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
    st = parse_state(text, store.parent(path), path)
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
    """A whole checkpoint at ``path``: a local file, a committed one at a URL, or a TF bundle."""
    from ..checkpoint.tf import is_bundle
    return store_for(path).is_checkpoint(path) or is_bundle(path)


def update_checkpoint_state(directory: str, state: CheckpointState, latest_filename: str | None = None) -> None:
    """Replace the directory's state file atomically (a lock is the caller's: ``Store.lock``)."""
    directory = normalize(directory)
    path = store_for(directory).join(directory, latest_filename or STATE_FILENAME)
    store_for(directory).replace(path, format_state(state, directory).encode("utf-8"))


def _matching(pattern: str) -> list[str]:
    """Paths matching ``pattern`` (TF's ``get_matching_files``: a glob), sorted; at a URL, the
    path itself if it exists (object stores are not globbed)."""
    store = store_for(pattern)
    if not store.local:
        return [pattern] if store.exists(pattern) else []
    import glob
    return sorted(glob.glob(pattern))


def checkpoint_exists(checkpoint_prefix: str) -> bool:
    """Whether a checkpoint is at ``checkpoint_prefix`` (TF 1.x's ``tf.train.checkpoint_exists``).

    As TF: true when ``checkpoint_prefix + ".index"`` (a TF bundle) or ``checkpoint_prefix``
    itself (a varstore checkpoint, sharded or not) matches an existing file; both may be
    globs (``"run/model.ckpt-*"``). Like TF it checks existence only, not content.

    >>> import os, tempfile, varstore as tf
    >>> tf.reset_default_graph(); v = tf.Variable(1.0, name="v")
    >>> d = tempfile.mkdtemp()
    >>> with tf.Session() as sess:
    ...     sess.run(v.initializer)
    ...     path = tf.train.Saver().save(sess, os.path.join(d, "model.ckpt"), global_step=1)
    >>> tf.train.checkpoint_exists(path), tf.train.checkpoint_exists(os.path.join(d, "model.ckpt-*"))
    (True, True)
    >>> tf.train.checkpoint_exists(os.path.join(d, "model.ckpt-2"))
    False
    """
    prefix = normalize(checkpoint_prefix)
    return bool(_matching(prefix + ".index") or _matching(prefix))


def get_checkpoint_mtimes(checkpoint_prefixes: list[str]) -> list[float]:
    """Modification times (seconds since the epoch) of the checkpoints at ``checkpoint_prefixes``.

    As TF: for each prefix, the first file matching ``prefix + ".index"`` (a TF bundle), else
    the first matching ``prefix`` (a varstore checkpoint); prefixes that match nothing are
    skipped, so the list may be shorter than the input. Times are whole seconds, as TF's
    file system reports them. Unlike TF, a single string is one prefix (TF iterates over its
    characters).

    >>> import varstore as tf
    >>> tf.train.get_checkpoint_mtimes(["/nonexistent/model.ckpt-1"])
    []
    """
    if isinstance(checkpoint_prefixes, (str, os.PathLike)):
        checkpoint_prefixes = [checkpoint_prefixes]
    out: list[float] = []
    for raw in checkpoint_prefixes:
        prefix = normalize(raw)
        for pattern in (prefix + ".index", prefix):
            found = _matching(pattern)
            if found:
                t = store_for(found[0]).mtime(found[0])
                if t is not None:
                    out.append(float(int(t)))  # TF's stat truncates to whole seconds
                break
    return out
