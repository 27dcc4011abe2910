"""write_bundle: tensors to a TF V2 bundle (``P.index`` + ``P.data-00000-of-00001``) that
TensorFlow's ``Saver.restore``, ``tf.train.Checkpoint`` name-based restore and
``NewCheckpointReader`` read.

Bytes go from each array's memory to the data file in 1 MiB steps, the CRC32C
updated on each step just before it is written (one pass over memory). Each
tensor starts at a multiple of 64 bytes in the data file (TF reads any offsets;
aligned ones let readers map tensors without a copy). The index is built as TF's
TableBuilder builds it.

Atomic as far as two files allow: both are written to temporary files beside
their names and fsynced; then an index already at ``P`` is removed, the data file
renamed into place, then the index (the commit point), then the directory is
fsynced. A crash leaves the previous bundle, or none at ``P`` (never one whose
index and data disagree); on an exception the temporary files are removed. At a
URL the data object is uploaded first and the index (one PUT) last.

>>> import numpy as np, os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "model.ckpt-1")
>>> write_bundle(p, [("w", np.zeros(3, "float32")), ("step", np.array(1, "int64"))], fsync=False) > 0
True
>>> sorted(os.listdir(os.path.dirname(p)))
['model.ckpt-1.data-00000-of-00001', 'model.ckpt-1.index']
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from devices.errors import InvalidArgumentError
from devices.transfer import host_chunks

from .. import remote
from ..store import normalize, store_for
from ..store.local import AtomicFile
from . import dtypes, files, strings
from .crc32c import crc32c, mask
from .sstable import build_table
from .wire import Entry, Header, encode_entry, encode_header

ALIGNMENT = 64
_STEP = 1 << 20
_PAD = bytes(ALIGNMENT)


class _Data:
    """The data file being written: a position, writes, padding."""

    def __init__(self, write: Any):
        self._write = write
        self.pos = 0

    def write(self, view: Any) -> None:
        view = memoryview(view).cast("B")
        if view.nbytes:
            self._write(view)
            self.pos += view.nbytes

    def align(self) -> None:
        pad = -self.pos % ALIGNMENT
        if pad:
            self.write(_PAD[:pad])


def _entry(name: Any, array: Any, data: _Data) -> Entry:
    if not isinstance(name, str) or not name or name.startswith("\x00"):
        raise InvalidArgumentError(f"write_bundle: tensor names must be non-empty str, received {name!r}")
    shape = tuple(int(d) for d in getattr(array, "shape", np.shape(array)))
    dt = np.dtype(getattr(array, "dtype", np.asarray(array).dtype))
    if dt.kind in "OSU":
        raw, crc = strings.encode(np.asarray(array))
        data.align()
        e = Entry(dtype=dtypes.DT_STRING, shape=shape, offset=data.pos, size=len(raw), crc32c=crc)
        data.write(raw)
        return e
    native = dt.newbyteorder("=") if dt.byteorder in "<>" else dt
    enum = dtypes.ENUM.get(native)
    if enum is None:
        raise InvalidArgumentError(f"write_bundle: tensor {name!r} has dtype {dt}, which TF bundles do not hold "
                                   f"(they hold {sorted(d.name for d in dtypes.ENUM)} and strings)")
    data.align()
    e = Entry(dtype=enum, shape=shape, offset=data.pos)
    if isinstance(array, np.ndarray):
        a = array
        if dt.itemsize > 1 and (dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big")):
            a = a.astype(dt.newbyteorder("<"))
        a = a if a.flags.c_contiguous else np.ascontiguousarray(a)
        chunks: Iterable[memoryview] = [a.reshape(-1).view(np.uint8).data]
    else:  # a device array: staged through bounded host buffers
        chunks = host_chunks(array)
    crc = 0
    start = data.pos
    for chunk in chunks:
        chunk = memoryview(chunk).cast("B")
        for s in range(0, chunk.nbytes, _STEP):
            part = chunk[s:s + _STEP]
            crc = crc32c(part, crc)  # just before the write reads the same bytes: one pass over memory
            data.write(part)
    e.size = data.pos - start
    n = 1
    for d in shape:
        n *= d
    if e.size != n * native.itemsize:
        raise InvalidArgumentError(f"write_bundle: tensor {name!r} gave {e.size} bytes for shape {list(shape)} "
                                   f"{native.name}")
    e.crc32c = mask(crc)
    return e


def index_bytes(entries: dict[str, Entry], num_shards: int = 1) -> bytes:
    """The ``.index`` for ``entries`` (name -> Entry): header under ``""``, then entries by key."""
    header = Header(num_shards=num_shards, producer=1)
    items = [(b"", encode_header(header))]
    items += sorted((k.encode("utf-8"), encode_entry(e)) for k, e in entries.items())
    return build_table(items)


def write_bundle(prefix: str | os.PathLike, tensors: Iterable[tuple[str, Any]], *, fsync: bool = True,
                 stat_out: list | None = None, extra: dict | None = None) -> int:
    """Write ``tensors`` (pairs of name and numpy/cupy array; string tensors as arrays of
    bytes) as the TF bundle ``prefix``. Returns the bytes written (data and index).

    ``stat_out`` (a list) receives the index file's ``os.stat_result`` (local files).
    ``extra`` is accepted for the Saver's sake and not stored: a bundle has no place for it.
    Raises InvalidArgumentError for duplicate or non-str names and dtypes TF bundles do not
    hold; NotFoundError for a missing directory; OSError (a full disk) propagates.
    """
    prefix = files.prefix_of(normalize(prefix)) if str(prefix).endswith(files.INDEX_SUFFIX) else normalize(prefix)
    store = store_for(prefix)
    store.require_directory(prefix, "writing TF bundle")
    data_path, index_path = files.data_file(prefix, 0, 1), files.index_file(prefix)
    if store.local:
        return _write_local(prefix, data_path, index_path, tensors, fsync, stat_out)
    return _write_remote(data_path, index_path, tensors)


def _collect(tensors: Iterable[tuple[str, Any]], data: _Data) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for name, array in tensors:
        if name in entries:
            raise InvalidArgumentError(f"write_bundle: two tensors are named {name!r}")
        entries[name] = _entry(name, array, data)
    return entries


def _write_local(prefix: str, data_path: str, index_path: str, tensors: Iterable[tuple[str, Any]], fsync: bool,
                 stat_out: list | None) -> int:
    out = AtomicFile(data_path, fsync, what="TF bundle data file")
    idx: AtomicFile | None = None
    try:
        data = _Data(out.write)
        entries = _collect(tensors, data)
        raw = index_bytes(entries)
        idx = AtomicFile(index_path, fsync, what="TF bundle index")
        idx.write(raw)
        # The old index goes first: from here until the new one lands, the name holds no bundle
        # rather than an old index over new data.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(index_path)
        out.commit()
        idx.commit(stat_out)
        return data.pos + len(raw)
    except BaseException:
        out.abort()
        if idx is not None:
            idx.abort()
        raise


def _write_remote(data_path: str, index_path: str, tensors: Iterable[tuple[str, Any]]) -> int:
    # Objects cannot be renamed cheaply: the old index goes first (the name then holds no
    # bundle, never an old index over new data), the data streams to its name, the index
    # (one PUT) commits.
    from ..remote_stream import Sink
    remote.remove(index_path)
    sink = Sink(data_path)
    try:
        data = _Data(lambda v: sink.writev([v]))
        entries = _collect(tensors, data)
        raw = index_bytes(entries)
        sink.close()
    except BaseException:
        sink.abort()
        raise
    store_for(index_path).replace(index_path, raw)
    return data.pos + len(raw)


__all__ = ["write_bundle", "index_bytes", "ALIGNMENT"]
