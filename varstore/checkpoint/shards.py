"""Sharded checkpoints: a main file that indexes shard files written beside it by ps tasks.

``Saver(sharded=True)`` has each ps task write the variables it holds to its
own shard, in parallel, from the task's process; the main file holds the
other variables and lists the shards in its ``extra`` (docs/FORMAT.md,
"Sharded checkpoints"). :class:`CheckpointSet` reads a main file and its
shards as one checkpoint; a plain checkpoint is a set of one file.

>>> import numpy as np, os, tempfile
>>> from varstore.checkpoint import write_checkpoint
>>> p = os.path.join(tempfile.mkdtemp(), "model.ckpt")
>>> _ = write_checkpoint(p, [("v", np.ones(2, "float32"))], fsync=False)
>>> with CheckpointSet(p) as c:
...     c.names(), c.files
(['v'], [])
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from devices.errors import DataLossError, NotFoundError

from .reader import CheckpointReader, key_not_found
from .store import store_for

SHARDS_KEY = "shards"
MAX_SHARDS = 1 << 16
_SHARD_RE = re.compile(r"\.shard-(0|[1-9][0-9]*)-of-([1-9][0-9]*)\.([0-9a-f]{8})\Z")


def shard_file_name(base: str, index: int, count: int, save_id: str) -> str:
    """``model.ckpt-10.shard-0-of-2.1a2b3c4d``: unique per save, so a save over an existing
    checkpoint never touches the shards the old main file names until the new one is in place."""
    return f"{base}.shard-{index}-of-{count}.{save_id}"


def shard_files(path: str) -> list[str]:
    """Shard files beside the checkpoint ``path`` (whatever save wrote them)."""
    store = store_for(path)
    base = os.path.basename(path)
    return [store.join(store.parent(path), n) for n in store.listdir(store.parent(path))
            if n.startswith(base) and _SHARD_RE.fullmatch(n[len(base):])]


def remove_shards(path: str, keep: Sequence[str] = ()) -> None:
    """Delete the shard files of ``path`` except those named (basenames) in ``keep``."""
    for f in shard_files(path):
        if os.path.basename(f) not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)


class CheckpointSet:
    """A checkpoint and its shards, read as one: each tensor from the file that holds it.

    Offers what the Saver and ``tf.train.load_variable`` use of a CheckpointReader
    (``names``, ``has_tensor``, ``shape``, ``dtype``, ``nbytes``, ``get_tensor``,
    ``read_into``, ``get_variable_to_shape_map``...) plus ``file_of(name)``. A shard the
    main file lists that is missing, belongs to another save or repeats a tensor is
    DataLossError naming the files.
    """

    def __init__(self, path: str | os.PathLike):
        self.main = CheckpointReader(path)
        self.path = self.main.path
        self.extra = self.main.extra
        self._readers: list[CheckpointReader] = []
        self._where: dict[str, CheckpointReader] = {}
        try:
            self._open_shards()
            for r in [self.main] + self._readers:
                for n in r.names():
                    if n in self._where:
                        raise DataLossError(f"{self.path}: tensor {n!r} is in both {self._where[n].path} "
                                            f"and {r.path}")
                    self._where[n] = r
        except BaseException:
            self.close()
            raise

    @property
    def files(self) -> list[str]:
        """Paths of the shard files (empty for an unsharded checkpoint)."""
        return [r.path for r in self._readers]

    def _open_shards(self) -> None:
        listing = self.extra.get(SHARDS_KEY)
        if listing is None:
            return
        if not isinstance(listing, list) or len(listing) > MAX_SHARDS:
            raise DataLossError(f"{self.path}: extra['{SHARDS_KEY}'] must be a list of at most {MAX_SHARDS} shards")
        save_id = self.extra.get("save_id")
        store = store_for(self.path)
        directory = store.parent(self.path)
        for i, entry in enumerate(listing):
            name = entry.get("file") if isinstance(entry, dict) else None
            if (not isinstance(name, str) or not name or name in (".", "..") or os.path.basename(name) != name
                    or "/" in name or "\\" in name or "\x00" in name):
                raise DataLossError(f"{self.path}: shard #{i} must name a file in the checkpoint's directory, "
                                    f"received {name!r}")
            shard_path = store.join(directory, name)
            try:
                r = CheckpointReader(shard_path)
            except NotFoundError as e:
                raise DataLossError(f"{self.path}: shard {name} is missing or unreadable ({e.message})") from None
            self._readers.append(r)
            if r.extra.get("save_id") != save_id or r.extra.get("shard_of") != os.path.basename(self.path):
                raise DataLossError(f"{self.path}: shard {name} belongs to another save "
                                    f"({r.extra.get('shard_of')!r}, save {r.extra.get('save_id')!r})")

    # -- lookup --------------------------------------------------------------------
    def _reader(self, name: str) -> CheckpointReader:
        r = self._where.get(name) if isinstance(name, str) else None
        if r is None:
            if not self._readers:
                self.main.shape(name)  # the reader's own NotFoundError, with the closest names
            self._missing(name)
        return r

    def _missing(self, name: str) -> None:
        raise key_not_found(name, self._where, self.path, f" or its {len(self._readers)} shard(s)")

    def file_of(self, name: str) -> str:
        """The path of the file holding tensor ``name``."""
        return self._reader(name).path

    def names(self) -> list[str]:
        return sorted(self._where)

    def has_tensor(self, name: str) -> bool:
        return isinstance(name, str) and name in self._where

    __contains__ = has_tensor

    def __len__(self) -> int:
        return len(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._reader(name).shape(name)

    def dtype(self, name: str) -> np.dtype:
        return self._reader(name).dtype(name)

    def nbytes(self, name: str) -> int:
        return self._reader(name).nbytes(name)

    def get_tensor(self, name: str) -> np.ndarray:
        return self._reader(name).get_tensor(name)

    def read_tensor(self, name: str) -> np.ndarray:
        return self._reader(name).read_tensor(name)

    def read_into(self, name: str, out: Any) -> Any:
        return self._reader(name).read_into(name, out)

    def lookup(self, names: list[str]) -> tuple[list, list]:
        """(shapes, dtypes) of ``names`` (CheckpointReader.lookup, across the shards)."""
        if not self._readers:
            return self.main.lookup(names)
        return [self.shape(n) for n in names], [np.dtype(self.dtype(n)) for n in names]

    def read_many(self, names: list[str], outs: list) -> None:
        """CheckpointReader.read_many, each file's tensors read from that file."""
        if not self._readers:
            return self.main.read_many(names, outs)
        groups: dict[int, tuple[CheckpointReader, list, list]] = {}
        for name, out in zip(names, outs):
            r = self._reader(name)
            g = groups.setdefault(id(r), (r, [], []))
            g[1].append(name)
            g[2].append(out)
        for r, ns, os_ in groups.values():
            r.read_many(ns, os_)
        return None

    def iter_chunks(self, name: str, chunk_bytes: int = 64 << 20, *, buffer: Any = None) -> Any:
        """The tensor's bytes in chunks through one reused buffer (a GPU restore's pinned staging)."""
        return self._reader(name).iter_chunks(name, chunk_bytes, buffer=buffer)

    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        return {n: list(self.shape(n)) for n in self.names()}

    def get_variable_to_dtype_map(self) -> dict[str, np.dtype]:
        return {n: self.dtype(n) for n in self.names()}

    # -- lifetime --------------------------------------------------------------------
    def verify(self) -> list:
        """(name, error or None) for every tensor of the main file and its shards."""
        out = []
        for r in [self.main] + self._readers:
            out += r.verify()
        return sorted(out, key=lambda ne: ne[0])

    def close(self) -> None:
        for r in [self.main] + self._readers:
            r.close()

    def __enter__(self) -> CheckpointSet:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CheckpointSet {self.path!r}: {len(self._where)} tensors in {1 + len(self._readers)} file(s)>"


def load_arrays(device: Any, work: Sequence[tuple[str, str, Any, Any | None]]) -> list:
    """Read tensors into arrays on ``device``: ``work`` is ``(file, tensor name, dtype,
    current array or None)``; the current array is filled in place when it fits.

    Runs where the arrays live: in a ps task's process for its variables (the Saver sends
    this function by reference), so the data goes from the file to the task directly.
    """
    readers: dict[str, CheckpointReader] = {}
    out = []
    try:
        for path, name, dtype, cur in work:
            r = readers.get(path)
            if r is None:
                r = readers[path] = CheckpointReader(path)
            shape, fdt = tuple(r.shape(name)), r.dtype(name)
            dtype = np.dtype(dtype)
            if device.kind == "cpu":
                if (cur is not None and tuple(cur.shape) == shape and cur.dtype == fdt == dtype
                        and cur.flags.c_contiguous and cur.flags.writeable):
                    r.read_into(name, cur)
                    out.append(cur)
                    continue
                fresh = device.empty(shape, fdt)
                r.read_into(name, fresh)
                if fdt != dtype:
                    fresh = device.asarray(fresh, dtype=dtype, copy=True)
            else:
                fresh = device.asarray(r.get_tensor(name), dtype=dtype, copy=True)
                if cur is not None and tuple(cur.shape) == shape and cur.dtype == dtype:
                    device.copy_into(cur, fresh)
                    fresh = cur
            out.append(fresh)
    finally:
        for r in readers.values():
            r.close()
    return out


def open_checkpoint(path: str | os.PathLike) -> Any:
    """A CheckpointReader for a plain checkpoint, a :class:`CheckpointSet` for a sharded one,
    a ``tf.TFBundleReader`` for a TensorFlow bundle (``path`` its prefix or its ``.index``)."""
    from . import tf as _tf
    if _tf.is_bundle(path):
        return _tf.TFBundleReader(path)
    reader = CheckpointReader(path)
    if SHARDS_KEY not in reader.extra:
        return reader
    reader.close()
    return CheckpointSet(path)
