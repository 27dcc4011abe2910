"""write_checkpoint: stream tensors into a new checkpoint file, atomically.

Tensor bytes go from the array's own memory (numpy) or from
``devices.transfer.host_chunks`` (cupy: bounded staging buffers) straight to
the file (``os.writev`` of a small header and a memoryview: no copy of the
data in Python), and the xxh3 checksum is updated on the same bytes just
before they are written, so the data is walked once.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from itertools import accumulate
from operator import add, attrgetter
from typing import Any

import msgpack
import numpy as np
import xxhash

from devices.dtypes import as_dtype, dtype_name
from devices.errors import InvalidArgumentError
from devices.shapes import as_shape, num_elements
from devices.transfer import host_chunks

from . import fileio
from . import format as fmt
from .store import normalize, store_for
from .validate import DECODE_ERRORS, unpack_limited

# Small writes (headers, padding, small tensors) are gathered in one buffer so
# that a checkpoint of thousands of small tensors costs a few syscalls, not
# thousands; data chunks at least this large go to the kernel directly.
_COALESCE_BYTES = 256 << 10
_FLUSH_BYTES = 1 << 20
# A TensorRun (small tensors written as one item): at most RUN_TENSORS tensors of fewer than
# RUN_TENSOR_BYTES each, cut once RUN_BYTES are reached (the run's one copy stays this small).
RUN_TENSORS = 4096
RUN_BYTES = 4 << 20
RUN_TENSOR_BYTES = _COALESCE_BYTES
# Large data is hashed and written in steps of this size, so that the write's
# copy into the page cache reads bytes the hash just pulled into the CPU cache:
# one pass over memory instead of two (measured: hashing then costs ~1/3 of a
# separate xxh3 pass).
_STEP = 1 << 20


class _Out:
    """A sink with a position, a small coalescing buffer and writev.

    ``writev(views)`` writes some leading bytes of ``views`` and returns how many
    (a file descriptor may write short; a remote sink takes them all)."""

    def __init__(self, writev: Any):
        self._sink = writev
        self.pos = 0
        self._pending = bytearray()

    def small(self, data: Any) -> None:
        self._pending += data
        self.pos += len(data)
        if len(self._pending) >= _FLUSH_BYTES:
            self.flush()

    def block(self, data: bytes) -> None:
        """Write ``data`` (a run's bytes): a large block goes to the kernel as it is."""
        if len(data) < _COALESCE_BYTES:
            self.small(data)
            return
        view = memoryview(data)
        if self._pending:
            pending, self._pending = self._pending, bytearray()
            self._writev([memoryview(pending), view])
        else:
            self._writev([view])
        self.pos += len(data)

    def data(self, view: memoryview, h: Any) -> None:
        """Write tensor bytes and add them to the checksum ``h``."""
        n = view.nbytes
        if n < _COALESCE_BYTES:
            h.update(view)
            self.small(view)
            return
        self.pos += n
        for s in range(0, n, _STEP):
            part = view[s:s + _STEP]
            h.update(part)
            if self._pending:
                pending, self._pending = self._pending, bytearray()
                self._writev([memoryview(pending), part])
            else:
                self._writev([part])

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, bytearray()
            self._writev([memoryview(pending)])

    def _writev(self, views: list[memoryview]) -> None:
        while views:
            batch = fileio.iov_batch(views)  # stay under the per-call limit
            written = self._sink(batch)
            # Drop what was written (a short write happens on a full disk or a signal).
            while views and written >= views[0].nbytes:
                written -= views[0].nbytes
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]


def _byte_view(chunk: Any) -> memoryview:
    """A flat unsigned-byte view of a chunk (no copy)."""
    v = memoryview(chunk)
    return v if v.format == "B" and v.ndim == 1 else v.cast("B")


# Padding runs of msgpack nils, by length (0..63).
_NILS = [b"\xc0" * k for k in range(fmt.ALIGNMENT)]
# dtype -> (canonical dtype, name): as_dtype is exact but slow for thousands of small tensors.
_DTYPES: dict[np.dtype, tuple[np.dtype, str]] = {}


def _describe(name: str, array: Any) -> tuple[Any, np.dtype, str, tuple[int, ...]]:
    """The array (numpy for Python values), its canonical dtype, dtype name and shape."""
    if not (hasattr(array, "shape") and hasattr(array, "dtype")):
        array = np.asarray(array)
    try:
        info = _DTYPES.get(array.dtype) if isinstance(array.dtype, np.dtype) else None
        if info is None:
            canonical = as_dtype(array.dtype)
            info = (canonical, dtype_name(canonical))
            if isinstance(array.dtype, np.dtype):
                _DTYPES[array.dtype] = info
        shape = tuple(array.shape) if isinstance(array, np.ndarray) else as_shape(array.shape)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"write_checkpoint: tensor {name!r}: {e.message}") from None
    if len(shape) > fmt.MAX_RANK:
        raise InvalidArgumentError(
            f"write_checkpoint: tensor {name!r} has rank {len(shape)}, at most {fmt.MAX_RANK} is supported")
    return array, info[0], info[1], shape


def _c_order_blocks(a: np.ndarray, limit: int):
    """Views of ``a`` that together cover it in C order, each at most ``limit`` bytes
    (or one element)."""
    if a.ndim == 0 or a.nbytes <= limit:
        yield a
    elif a.ndim == 1:
        step = max(1, limit // a.itemsize)
        for i in range(0, a.shape[0], step):
            yield a[i:i + step]
    else:
        row = a.nbytes // a.shape[0]
        if row <= limit:
            k = limit // row
            for i in range(0, a.shape[0], k):
                yield a[i:i + k]
        else:
            for i in range(a.shape[0]):
                yield from _c_order_blocks(a[i], limit)


def _chunks(array: Any, chunk_bytes: int):
    """Raw little-endian C-order bytes of ``array``, as memoryviews.

    A C-contiguous little-endian numpy array is one view of its own memory. A
    strided or big-endian one is copied a block at a time into one reused buffer
    of at most ``chunk_bytes`` (never a full copy). Anything else (cupy) goes
    through ``devices.transfer.host_chunks``, which stages device memory in
    bounded buffers.
    """
    if not isinstance(array, np.ndarray):
        yield from host_chunks(array, chunk_bytes)
        return
    dt = array.dtype
    swap = dt.itemsize > 1 and (dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"))
    if array.flags.c_contiguous and not swap:
        yield _byte_view(array.reshape(-1).view(np.uint8))
        return
    little = dt.newbyteorder("<") if swap else dt
    staging = np.empty(max(1, min(array.size, chunk_bytes // dt.itemsize)), dtype=little)
    for block in _c_order_blocks(array, chunk_bytes):
        out = staging[:block.size].reshape(block.shape)
        np.copyto(out, block)  # gathers strides and converts byte order in one pass
        yield _byte_view(out.reshape(-1).view(np.uint8))


def _write_small(out: _Out, array: np.ndarray, nbytes: int) -> tuple[int, int]:
    """One small C-contiguous little-endian host tensor in one bin, straight into the
    coalescing buffer: (offset, checksum). The fast path for models with thousands of
    small tensors, where per-tensor overhead, not bytes, is the cost."""
    view = array.reshape(-1).view(np.uint8).data
    out.small(b"\xc0" * fmt.padding_size(out.pos) + fmt.bin_header(nbytes))
    offset = out.pos
    out.small(view)
    return offset, xxhash.xxh3_64_intdigest(view)


def _write_tensor(out: _Out, name: str, array: Any, bin_bytes: int, chunk_bytes: int):
    """Write one tensor's bins; return (offset, dtype name, shape, nbytes, checksum)."""
    array, dtype, dtype_str, shape = _describe(name, array)
    nbytes = num_elements(shape) * dtype.itemsize
    if (nbytes < _COALESCE_BYTES and nbytes <= bin_bytes and type(array) is np.ndarray
            and array.flags.c_contiguous and (array.dtype.byteorder in "<|" or
                                              (array.dtype.byteorder == "=" and sys.byteorder == "little"))):
        offset, checksum = _write_small(out, array, nbytes)
        return offset, dtype_str, shape, nbytes, checksum
    h = xxhash.xxh3_64()
    offset = None
    chunks = _chunks(array, chunk_bytes)
    # Closed even when a write fails: a device array's gather holds pinned staging buffers
    # until its generator ends, and a traceback kept by a failed async save would keep it alive.
    try:
        pending: memoryview | None = None
        written = 0
        for _, _start, length in fmt.pieces(0, nbytes, bin_bytes):
            out.small(b"\xc0" * fmt.padding_size(out.pos) + fmt.bin_header(length))
            if offset is None:
                offset = out.pos
            need = length
            while need:
                if pending is None or pending.nbytes == 0:
                    c = next(chunks, None)
                    if c is None:
                        raise InvalidArgumentError(
                            f"write_checkpoint: tensor {name!r} yielded {written} bytes, "
                            f"expected {nbytes} (shape {shape}, {dtype.name})")
                    pending = _byte_view(c)
                part = pending[:need]
                pending = pending[need:]
                out.data(part, h)
                need -= part.nbytes
                written += part.nbytes
        extra = (pending.nbytes if pending is not None else 0) + sum(_byte_view(c).nbytes for c in chunks)
        if extra:
            raise InvalidArgumentError(
                f"write_checkpoint: tensor {name!r} yielded {written + extra} bytes, "
                f"expected {nbytes} (shape {shape}, {dtype.name})")
    finally:
        chunks.close()
    return offset, dtype_str, shape, nbytes, h.intdigest()


def _pack_extra(extra: dict | None) -> dict:
    if extra is None:
        return {}
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise InvalidArgumentError(
            f"write_checkpoint: extra must be a dict with str keys, received {type(extra).__name__}")
    try:
        raw = msgpack.packb(extra, use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidArgumentError(
            f"write_checkpoint: extra must hold msgpack-native values (None, bool, int, float, "
            f"str, bytes, list, dict with str keys): {e}") from None
    if len(raw) > fmt.MAX_EXTRA_BYTES:
        raise InvalidArgumentError(
            f"write_checkpoint: extra packs to {len(raw)} bytes, at most {fmt.MAX_EXTRA_BYTES} allowed")
    # What is written must be readable: decode it with the reader's own limits.
    try:
        return unpack_limited(raw)
    except DECODE_ERRORS as e:
        raise InvalidArgumentError(f"write_checkpoint: extra cannot be read back: {e}") from None


class TensorRun:
    """Many small host tensors written as one item of ``write_checkpoint``'s ``tensors``:
    ``names`` and ``arrays`` (numpy) in order. The arrays must not change until the writer
    asks for the next item (the Saver holds their variables' locks meanwhile).

    A run is checked once, hashed per tensor and written with one copy; a run that is not
    all small, C-contiguous, native-order numpy arrays of supported dtypes under fresh str
    names is written tensor by tensor instead (same bytes; errors name the tensor)."""

    __slots__ = ("names", "arrays")

    def __init__(self, names: list[str], arrays: list):
        self.names, self.arrays = names, arrays


class _Columns:
    """The index being built: one list per column, and the names seen."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.dtypes: list[str] = []
        self.shapes: list = []
        self.offsets: list[int] = []
        self.sizes: list[int] = []
        self.checksums: list[int] = []
        self.seen: set[str] = set()

    def check_name(self, name: Any) -> None:
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"write_checkpoint: tensor names must be str, received {type(name).__name__} {name!r}")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(
                f"write_checkpoint: tensor name {name!r} is not valid unicode (lone surrogate)") from None
        if name in self.seen:
            raise InvalidArgumentError(f"write_checkpoint: duplicate tensor name {name!r}")
        self.seen.add(name)

    def pack(self, bin_bytes: int, extra_obj: dict) -> bytes:
        return msgpack.packb({
            "names": self.names, "dtypes": self.dtypes, "shapes": self.shapes, "offsets": self.offsets,
            "nbytes": self.sizes, "checksums": self.checksums, "bin_bytes": bin_bytes,
            "checksum": fmt.CHECKSUM, "extra": extra_obj,
        }, use_bin_type=True)


class _Gaps(dict):
    """(previous tensor's size, size) -> the nils and bin32 header between two small tensors
    written back to back (the previous one's data starts aligned, so its size alone fixes
    the padding): a model has few distinct pairs, so a run builds its gaps by lookup."""

    def __missing__(self, key: tuple[int, int]) -> bytes:
        prev, n = key
        gap = self[key] = _NILS[fmt.padding_size(prev)] + fmt.bin_header(n)
        return gap


_GAPS = _Gaps()
_NATIVE = "<|=" if sys.byteorder == "little" else "<|"
_nbytes_of, _dtype_of, _shape_of = attrgetter("nbytes"), attrgetter("dtype"), attrgetter("shape")


def _run_dtype_names(dts: list) -> list[str] | None:
    """The stored names of ``dts`` (numpy dtypes), or None when one is not a supported
    native-order dtype (the run is then written tensor by tensor, which says why)."""
    names = {}
    for dt in set(dts):
        info = _DTYPES.get(dt)
        if info is None:
            try:
                _describe("", np.empty(0, dt))  # fills _DTYPES, or says it is unsupported
            except InvalidArgumentError:
                return None
            info = _DTYPES.get(dt)
        if info is None or dt.byteorder not in _NATIVE:
            return None
        names[dt] = info[1]
    return list(map(names.__getitem__, dts))


def _write_run(out: _Out, cols: _Columns, names: list, arrays: list, small_limit: int) -> bool:
    """Write a run of small tensors with one copy (``b"".join`` of the gaps and the arrays),
    checked a column at a time. Returns False, having written nothing, when the run does
    not qualify (the caller writes it tensor by tensor)."""
    k = len(names)
    if k == 0:
        return True
    if set(map(type, names)) != {str} or set(map(type, arrays)) != {np.ndarray}:
        return False
    fresh = set(names)
    if len(fresh) != k or not cols.seen.isdisjoint(fresh):
        return False
    try:
        "".join(names).encode("utf-8")
    except UnicodeEncodeError:
        return False
    sizes = list(map(_nbytes_of, arrays))
    shapes = list(map(_shape_of, arrays))
    if max(sizes) >= small_limit or max(map(len, shapes)) > fmt.MAX_RANK:
        return False
    dtypes = _run_dtype_names(list(map(_dtype_of, arrays)))
    if dtypes is None:
        return False
    try:
        # The checksums of the bytes joined below (the arrays cannot change meanwhile); a
        # strided array has no simple buffer and fails here, before anything is written.
        checksums = list(map(xxhash.xxh3_64_intdigest, arrays))
    except (BufferError, ValueError, TypeError):
        return False
    gaps = list(map(_GAPS.__getitem__, zip([0] + sizes[:-1], sizes)))
    gaps[0] = _NILS[fmt.padding_size(out.pos)] + fmt.bin_header(sizes[0])
    parts: list = [None] * (2 * k)
    parts[0::2] = gaps
    parts[1::2] = arrays
    blob = b"".join(parts)
    # Data offsets: where each gap ends, counting the gaps and data before it.
    offsets = list(accumulate(map(add, map(len, gaps), [0] + sizes[:-1]), initial=out.pos))[1:]
    out.block(blob)
    cols.seen |= fresh
    cols.names += names
    cols.dtypes += dtypes
    cols.shapes += shapes
    cols.offsets += offsets
    cols.sizes += sizes
    cols.checksums += checksums
    return True


def _runs(tensors: list | tuple, small_limit: int) -> Iterator[Any]:
    """A list of pairs as items: consecutive small numpy arrays grouped into TensorRuns (a
    list's arrays stay put while the writer works through it), anything else as it is."""
    names: list = []
    arrays: list = []
    size = 0
    for item in tensors:
        array = item[1] if type(item) is tuple and len(item) == 2 else None
        if type(array) is np.ndarray and array.nbytes < small_limit:
            names.append(item[0])
            arrays.append(array)
            size += array.nbytes
            if len(names) >= RUN_TENSORS or size >= RUN_BYTES:
                yield TensorRun(names, arrays)
                names, arrays, size = [], [], 0
            continue
        if names:
            yield TensorRun(names, arrays)
            names, arrays, size = [], [], 0
        yield item
    if names:
        yield TensorRun(names, arrays)


def _write_body(out: _Out, tensors: Iterable[Any], extra_obj: dict, bin_bytes: int,
                chunk_bytes: int) -> int:
    """Header, tensors, index and footer into ``out`` (flushed); returns the index checksum."""
    out.small(fmt.HEADER)
    cols = _Columns()
    small_limit = min(_COALESCE_BYTES, bin_bytes + 1)
    if isinstance(tensors, (list, tuple)):
        tensors = _runs(tensors, small_limit)
    for item in tensors:
        if type(item) is TensorRun:
            if _write_run(out, cols, item.names, item.arrays, small_limit):
                continue
            pairs = zip(item.names, item.arrays)
        else:
            pairs = (item,)
        for pair in pairs:
            try:
                name, array = pair
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"write_checkpoint: expected (name, array) pairs, received {type(pair).__name__}") from None
            cols.check_name(name)
            offset, dtype, shape, nbytes, checksum = _write_tensor(out, name, array, bin_bytes, chunk_bytes)
            cols.names.append(name)
            cols.dtypes.append(dtype)
            cols.shapes.append(shape)
            cols.offsets.append(offset)
            cols.sizes.append(nbytes)
            cols.checksums.append(checksum)
    index = cols.pack(bin_bytes, extra_obj)
    if len(index) > fmt.MAX_INDEX_BYTES:
        raise InvalidArgumentError(
            f"write_checkpoint: the index of {len(cols.names)} tensors packs to {len(index)} bytes, "
            f"more than the {fmt.MAX_INDEX_BYTES} a reader accepts")
    index_offset = out.pos
    index_checksum = xxhash.xxh3_64_intdigest(index)
    out.small(index)
    out.small(fmt.pack_footer(index_offset, len(index), index_checksum))
    out.flush()
    return index_checksum


def write_checkpoint(path: str | os.PathLike, tensors: Iterable[tuple[str, Any]], *,
                     extra: dict | None = None, chunk_bytes: int = 64 << 20,
                     fsync: bool = True, stat_out: list | None = None) -> int:
    """Write ``tensors`` (pairs of name and numpy/cupy array) to the checkpoint ``path``.

    An item may also be a :class:`TensorRun` of many small host arrays, written in one go;
    a list of pairs is grouped into such runs here. Each item's arrays must stay unchanged
    until the writer asks for the next item.

    The file appears complete or not at all: the data goes to a temporary file
    in the same directory (``.{basename}.tmp-{pid}-{hex}``), which is fsynced and
    renamed over ``path``, and the directory is fsynced. On any exception
    (KeyboardInterrupt included) the temporary file is removed, the previous
    file at ``path`` is untouched, and the exception propagates.

    ``extra`` is a small dict of msgpack-native values stored in the index.
    ``chunk_bytes`` bounds the staging memory for device arrays. ``stat_out``, a
    list, receives the ``os.stat_result`` of the file written, taken before the
    rename: its inode tells this file from one another process renames to the same
    name later (the Saver's retention uses it). Returns the number of bytes written.

    ``path`` may be an fsspec URL (``s3://bucket/run/model.ckpt``, ``memory://...``):
    the data is streamed to a new object of this save's own (``{path}.data-{16 hex}``),
    then committed by one PUT of a small commit marker at ``path`` itself
    (``varstore.checkpoint.remote``); readers take it only from then on, and a
    previous checkpoint of that name stays whole until then. A failed save removes
    what it uploaded. ``fsync`` and ``stat_out`` do not apply to URLs.

    Raises NotFoundError when the parent directory is missing and
    InvalidArgumentError for duplicate names, non-str names, unsupported
    dtypes or an unpackable ``extra``. Other OSErrors (a full disk) propagate.

    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "model.ckpt")
    >>> n = write_checkpoint(p, [("w", np.ones((2, 3), "float32"))], extra={"global_step": 7})
    >>> n == os.path.getsize(p)
    True
    >>> from varstore.checkpoint import CheckpointReader
    >>> float(CheckpointReader(p).get_tensor("w").sum()), CheckpointReader(p).extra["global_step"]
    (6.0, 7)
    """
    path = normalize(path)
    if not isinstance(chunk_bytes, int) or chunk_bytes <= 0:
        raise InvalidArgumentError(f"write_checkpoint: chunk_bytes must be a positive int, received {chunk_bytes!r}")
    extra_obj = _pack_extra(extra)
    bin_bytes = fmt.MAX_BIN_BYTES
    if bin_bytes <= 0 or bin_bytes % fmt.ALIGNMENT or bin_bytes > 2**32 - 1:
        raise InvalidArgumentError(f"write_checkpoint: MAX_BIN_BYTES={bin_bytes} is not a valid bin size")
    store = store_for(path)
    store.require_directory(path, "write_checkpoint")
    sink = store.checkpoint_sink(path, fsync)
    try:
        out = _Out(sink.writev)
        index_checksum = _write_body(out, tensors, extra_obj, bin_bytes, chunk_bytes)
    except BaseException as e:
        sink.abort()
        if isinstance(e, OSError):  # a full disk, an I/O error: same errno, and which file
            raise fileio.with_context(e, f"writing checkpoint {path}; nothing was written there, "
                                         f"the file it replaces (if any) is untouched") from e
        raise
    sink.commit(out.pos, index_checksum, stat_out)
    return out.pos


__all__ = ["write_checkpoint", "TensorRun", "RUN_TENSORS", "RUN_BYTES", "RUN_TENSOR_BYTES"]
