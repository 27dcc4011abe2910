"""CheckpointReader: random access to the tensors of one checkpoint file.

Opening reads the header, the fixed-size footer and the index, and checks
all of them (``validate.py``); tensor bytes are read only when asked for,
each tensor on its own, and every read verifies the tensor's xxh3 checksum.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from itertools import accumulate
from operator import add, attrgetter, sub
from typing import Any

import numpy as np
import xxhash

from devices.errors import DataLossError, InvalidArgumentError, NotFoundError, OpError

from . import format as fmt
from .store import normalize, store_for
from .validate import Index, decode_index

# Hash each step right after reading it, while it is still in the CPU cache:
# one pass over memory instead of two (measured on 1 GiB from the page cache:
# 1 MiB steps add ~5% to a plain readinto; a separate xxh3 pass adds ~20%).
_READ_STEP = 1 << 20
# read_many: tensors per vectored read (two buffers each, under IOV_MAX), and the most bytes
# of other data between two tensors that one read still spans.
RUN_TENSORS = 512
RUN_GAP = 4096
_HEADER_AT = np.arange(-fmt.BIN_HEADER_SIZE, 0)
_shape_of, _dtype_of, _nbytes_of = attrgetter("shape"), attrgetter("dtype"), attrgetter("nbytes")


_c_contiguous, _writeable = attrgetter("flags.c_contiguous"), attrgetter("flags.writeable")


def _flat_bytes(a: np.ndarray) -> memoryview:
    """A flat byte view of a C-contiguous array, whatever its dtype."""
    return a.reshape(-1).view(np.uint8).data


def _run_ends(offsets: list[int], sizes: list[int], small: int) -> Iterator[int]:
    """Where each run of ``read_many`` ends: a run is up to RUN_TENSORS small tensors, each
    starting after the previous one's data and at most RUN_GAP bytes past it; a large
    tensor is a run of its own."""
    n = len(offsets)
    i = 0
    while i < n:
        j = i + 1
        if sizes[i] <= small:
            while (j < n and j - i < RUN_TENSORS and sizes[j] <= small
                   and 0 <= offsets[j] - fmt.BIN_HEADER_SIZE - offsets[j - 1] - sizes[j - 1] <= RUN_GAP):
                j += 1
        yield j
        i = j


def key_not_found(name: Any, names: Any, path: str, where: str = "") -> NotFoundError:
    """The NotFoundError for a missing tensor ``name``, with the closest of ``names``
    (every reader says it the same way)."""
    close = difflib.get_close_matches(str(name), list(names), n=5)
    hint = f" Closest names: {close}." if close else ""
    return NotFoundError(f"Key {name!r} not found in checkpoint {path}{where}.{hint}")


def host_target(out: Any, name: str, path: str, shape: tuple[int, ...], dtype: np.dtype, nbytes: int,
                hint: str = "") -> memoryview:
    """``read_into``'s ``out`` as a writable flat byte view: a C-contiguous numpy array of the
    tensor's shape and dtype, or a writable contiguous host buffer of its size; anything else is
    InvalidArgumentError naming the tensor (``hint``: what to use for other kinds of ``out``)."""
    if isinstance(out, np.ndarray):
        if out.shape != shape or out.dtype != dtype:
            raise InvalidArgumentError(
                f"read_into: tensor {name!r} in {path} has shape {shape} dtype {dtype.name}; "
                f"out has shape {out.shape} dtype {out.dtype}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise InvalidArgumentError(
                f"read_into: out for tensor {name!r} must be a writable C-contiguous array")
        return out.reshape(-1).view(np.uint8).data
    try:
        view = memoryview(out)
    except TypeError:
        raise InvalidArgumentError(
            f"read_into: out for tensor {name!r} must be a numpy array or a writable host buffer, "
            f"received {type(out).__name__}{hint}") from None
    if view.readonly or not view.c_contiguous or view.nbytes != nbytes:
        raise InvalidArgumentError(
            f"read_into: tensor {name!r} in {path} needs a writable contiguous buffer of "
            f"{nbytes} bytes (shape {shape} dtype {dtype.name}); out has {view.nbytes} bytes"
            f"{', read-only' if view.readonly else ''}")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def is_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file that starts like a varstore checkpoint (the
    magic only; open it with CheckpointReader to validate it).

    >>> is_checkpoint("/nonexistent")
    False
    """
    try:
        path = normalize(path)
        src = store_for(path).open_source(path)
    except (OpError, TypeError, ValueError):
        return False
    try:
        return src.pread(fmt.HEADER_SIZE - 1, 0) == fmt.HEADER_PREFIX
    except OpError:
        return False
    finally:
        src.close()


class CheckpointReader:
    """Read tensors from a checkpoint written by :func:`write_checkpoint`.

    >>> import numpy as np, tempfile, os
    >>> from varstore.checkpoint import write_checkpoint
    >>> p = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> _ = write_checkpoint(p, [("layer/w", np.arange(6, dtype="float32").reshape(2, 3))],
    ...                      extra={"global_step": 3}, fsync=False)
    >>> with CheckpointReader(p) as r:
    ...     r.names(), r.shape("layer/w"), r.extra["global_step"], r.get_tensor("layer/w").tolist()
    (['layer/w'], (2, 3), 3, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])

    Errors: a missing file, or a file that is clearly not a checkpoint,
    raises NotFoundError; a file that starts like a checkpoint but is
    truncated, corrupt or hostile raises DataLossError naming the file (and
    the tensor, where there is one). Missing keys raise NotFoundError with
    the closest names. The reader is safe to share between threads.

    ``path`` may be an fsspec URL (``s3://...``, ``memory://...``): the reader follows the
    commit marker at that name to the save's data object and reads it with ranged
    requests; no commit at that name (an interrupted save) is NotFoundError, and a data
    object that is not what its marker promises is DataLossError.
    """

    def __init__(self, path: str | os.PathLike):
        self._src: Any = None  # the file or object, open for reads (store.open_source)
        self._verified: set[int] = set()  # tensors get_tensor already checked in the mapping
        try:
            path = os.fspath(path)
        except TypeError:
            raise InvalidArgumentError(
                f"CheckpointReader: path must be a str or os.PathLike, received {type(path).__name__}") from None
        self.path: str = normalize(path)
        store = store_for(self.path)
        for attempt in range(2):
            self._src = store.open_source(self.path)
            try:
                self._index = self._open()
                break
            except NotFoundError:
                self.close()
                # A save of the same name committed and deleted the version just located: follow it.
                if attempt or not self._src.replaced():
                    raise
            except BaseException:
                self.close()
                raise
        self.extra: dict = self._index.extra

    # -- opening -----------------------------------------------------------------
    def _pread(self, n: int, offset: int) -> bytes:
        data = self._src.pread(n, offset)
        if len(data) != n:
            raise DataLossError(f"{self.path}: file shrank while being read (short read at {offset})")
        return data

    def _open(self) -> Index:
        size = self._size = self._src.size
        commit = self._src.commit
        if commit is not None and commit.size is not None and size != commit.size:
            raise DataLossError(f"{self.path}: its data object {commit.object} has {size} bytes, its commit "
                                f"marker promises {commit.size}")
        head = self._pread(min(size, fmt.HEADER_SIZE), 0)
        prefix = fmt.HEADER_PREFIX
        if not head.startswith(prefix[:len(head)]) or size == 0:
            if size == 0:
                raise DataLossError(f"{self.path}: the file is empty (0 bytes): a truncated checkpoint?")
            tail = self._pread(min(size, fmt.FOOTER_SIZE), size - min(size, fmt.FOOTER_SIZE))
            if fmt.parse_footer(tail) is not None:
                raise DataLossError(f"{self.path}: corrupt checkpoint header (the footer is intact)")
            raise NotFoundError(f"{self.path} is not a varstore checkpoint (its first bytes are not "
                                f"the {fmt.MAGIC!r} header)")
        if size < fmt.HEADER_SIZE + fmt.FOOTER_SIZE:
            raise DataLossError(f"{self.path}: truncated checkpoint ({size} bytes, a complete one "
                                f"has at least {fmt.HEADER_SIZE + fmt.FOOTER_SIZE})")
        version = head[-1]
        if version not in fmt.SUPPORTED_VERSIONS:
            raise DataLossError(f"{self.path}: checkpoint format version {version} is not understood "
                                f"by this reader (it reads versions {sorted(fmt.SUPPORTED_VERSIONS)})")
        footer = fmt.parse_footer(self._pread(fmt.FOOTER_SIZE, size - fmt.FOOTER_SIZE))
        if footer is None:
            raise DataLossError(f"{self.path}: truncated or corrupt checkpoint: no valid footer in the "
                                f"last {fmt.FOOTER_SIZE} bytes")
        fversion, index_offset, index_nbytes, index_checksum = footer
        if fversion != version:
            raise DataLossError(f"{self.path}: corrupt checkpoint: header says version {version}, "
                                f"footer says {fversion}")
        if commit is not None and commit.index_checksum not in (None, index_checksum):
            raise DataLossError(f"{self.path}: its data object {commit.object} is not the one its commit "
                                f"marker promises (index checksum {index_checksum:016x}, marker says "
                                f"{commit.index_checksum:016x})")
        if index_nbytes > fmt.MAX_INDEX_BYTES:
            raise DataLossError(f"{self.path}: corrupt checkpoint: index of {index_nbytes} bytes is larger "
                                f"than the {fmt.MAX_INDEX_BYTES} this reader accepts")
        if index_offset < fmt.HEADER_SIZE or index_offset + index_nbytes != size - fmt.FOOTER_SIZE:
            raise DataLossError(f"{self.path}: corrupt checkpoint: footer places the index at "
                                f"[{index_offset}, {index_offset + index_nbytes}), but it must end where "
                                f"the footer starts ({size - fmt.FOOTER_SIZE})")
        raw = self._pread(index_nbytes, index_offset)
        if xxhash.xxh3_64_intdigest(raw) != index_checksum:
            raise DataLossError(f"{self.path}: corrupt checkpoint: the index fails its checksum")
        return decode_index(raw, path=self.path, index_offset=index_offset)

    # -- lifetime ------------------------------------------------------------------
    def close(self) -> None:
        """Release the file. Arrays from get_tensor stay valid (they keep the mapping alive);
        later reads raise FailedPreconditionError."""
        if self._src is not None:
            self._src.close()

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<CheckpointReader {self.path!r}: {len(self._index.names)} tensors>"

    # -- metadata --------------------------------------------------------------------
    def _pos(self, name: str) -> int:
        i = self._index.position.get(name) if isinstance(name, str) else None
        if i is None:
            raise key_not_found(name, self._index.names, self.path)
        return i

    def names(self) -> list[str]:
        """All tensor names, sorted."""
        return sorted(self._index.names)

    def has_tensor(self, name: str) -> bool:
        return isinstance(name, str) and name in self._index.position

    __contains__ = has_tensor

    def __len__(self) -> int:
        return len(self._index.names)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._index.shapes[self._pos(name)]

    def dtype(self, name: str) -> np.dtype:
        return self._index.dtypes[self._pos(name)]

    def nbytes(self, name: str) -> int:
        return self._index.nbytes[self._pos(name)]

    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        """{name: shape as a list}, as TF's CheckpointReader returns."""
        ix = self._index
        return {n: list(s) for n, s in zip(ix.names, ix.shapes)}

    def get_variable_to_dtype_map(self) -> dict[str, np.dtype]:
        ix = self._index
        return dict(zip(ix.names, ix.dtypes))

    # -- data ------------------------------------------------------------------------
    def _fail(self, name: str, msg: str) -> DataLossError:
        return DataLossError(f"{self.path}: tensor {name!r}: {msg}")

    def _pieces(self, i: int) -> list[tuple[int, int, int]]:
        ix = self._index
        return fmt.pieces(ix.offsets[i], ix.nbytes[i], ix.bin_bytes)

    def _check_bin_headers(self, i: int, read: Any) -> None:
        """Each piece must be preceded by the bin32 header the index implies: the
        index and the msgpack stream must describe the same file."""
        name = self._index.names[i]
        for pos, _, length in self._pieces(i):
            if read(fmt.BIN_HEADER_SIZE, pos - fmt.BIN_HEADER_SIZE) != fmt.bin_header(length):
                raise self._fail(name, f"no bin32 header of {length} bytes before its data at {pos}")

    def _checksum_error(self, i: int, got: int) -> DataLossError:
        return self._fail(self._index.names[i], f"checksum mismatch (xxh3_64 {got:016x}, index says "
                                                f"{self._index.checksums[i]:016x}): the data is corrupt")

    def _map(self) -> Any:
        return self._src.map()

    def get_tensor(self, name: str) -> np.ndarray:
        """The tensor as a read-only array mapped from the file (no copy), checksum verified.

        A tensor stored in several bins (over 4 GiB) is not contiguous in the file
        and is read into a new read-only array instead (so is every tensor where the
        file cannot be mapped). Do not truncate a file while arrays map it (SIGBUS);
        write_checkpoint never does, it replaces files whole.
        """
        i = self._pos(name)
        ix = self._index
        dtype, shape, nbytes = ix.dtypes[i], ix.shapes[i], ix.nbytes[i]
        mm = self._map()
        if mm is None or len(self._pieces(i)) > 1:
            out = np.empty(shape, dtype)
            self.read_into(name, out)
            out.flags.writeable = False
            return out
        off = ix.offsets[i]
        self._check_bin_headers(i, lambda n, o: mm[o:o + n])
        # The array keeps the mapping alive (through the memoryview) after close().
        view = memoryview(mm)[off:off + nbytes]
        if i not in self._verified:
            got = xxhash.xxh3_64_intdigest(view)
            if got != ix.checksums[i]:
                raise self._checksum_error(i, got)
            self._verified.add(i)
        return np.frombuffer(view, dtype=np.uint8).view(dtype).reshape(shape)

    def read_tensor(self, name: str) -> np.ndarray:
        """The tensor as a new, writable array (checksum verified)."""
        i = self._pos(name)
        return self.read_into(name, np.empty(self._index.shapes[i], self._index.dtypes[i]))

    def _target(self, i: int, out: Any) -> memoryview:
        ix = self._index
        return host_target(out, ix.names[i], self.path, ix.shapes[i], ix.dtypes[i], ix.nbytes[i],
                           " (use iter_chunks for device arrays)")

    def _preadv(self, views: list[memoryview], offset: int) -> None:
        """Fill ``views`` (in order) from the file at ``offset``: no copy, no seek, so
        safe between threads."""
        if self._src.preadv(views, offset) != sum(map(_nbytes_of, views)):
            raise DataLossError(f"{self.path}: file shrank while being read (short read at {offset})")

    def _read_bytes(self, n: int, offset: int) -> bytes:
        buf = bytearray(n)
        self._preadv([memoryview(buf)], offset)
        return bytes(buf)

    def _read_pieces(self, i: int, view: memoryview, step: int) -> Iterator[memoryview]:
        """Read tensor ``i`` into ``view`` (its size, or a reused buffer of at least ``step``
        bytes when smaller than the tensor) in steps, checking every bin header (read in
        the same syscall as the data after it) and the checksum at the end. Yields each
        step's filled view before moving on."""
        name = self._index.names[i]
        reuse = view.nbytes < self._index.nbytes[i]
        header = memoryview(bytearray(fmt.BIN_HEADER_SIZE))
        h = xxhash.xxh3_64()
        for pos, start, length in self._pieces(i):
            for s in range(0, max(length, 1), step):
                n = min(step, length - s)
                part = view[:n] if reuse else view[start + s:start + s + n]
                if s == 0:
                    self._preadv([header, part], pos - fmt.BIN_HEADER_SIZE)
                    if header != fmt.bin_header(length):
                        raise self._fail(name, f"no bin32 header of {length} bytes before its data at {pos}")
                else:
                    self._preadv([part], pos + s)
                h.update(part)
                yield part
        got = h.intdigest()
        if got != self._index.checksums[i]:
            raise self._checksum_error(i, got)

    def read_into(self, name: str, out: Any) -> Any:
        """Read a tensor into ``out`` (a C-contiguous numpy array of its shape and
        dtype, or any writable buffer of its size) with no intermediate copy, and
        verify its checksum. Returns ``out``.

        On DataLossError the contents of ``out`` are unspecified.
        """
        i = self._pos(name)
        view = self._target(i, out)
        ix = self._index
        n = ix.nbytes[i]
        if n <= _READ_STEP and n <= ix.bin_bytes:
            # One bin, one syscall for its header and data, no generator: the common case of a
            # model with thousands of small tensors, where per-tensor overhead is the cost.
            header = bytearray(fmt.BIN_HEADER_SIZE)
            self._preadv([memoryview(header), view], ix.offsets[i] - fmt.BIN_HEADER_SIZE)
            if header != fmt.bin_header(n):
                raise self._fail(ix.names[i], f"no bin32 header of {n} bytes before its data at {ix.offsets[i]}")
            got = xxhash.xxh3_64_intdigest(view)
            if got != ix.checksums[i]:
                raise self._checksum_error(i, got)
            return out
        for _ in self._read_pieces(i, view, _READ_STEP):
            pass
        return out

    def lookup(self, names: list[str]) -> tuple[list[tuple[int, ...]], list[np.dtype]]:
        """(shapes, numpy dtypes) of ``names``, a column at a time: a restore's plan of
        thousands of variables. A missing name is NotFoundError with the closest names."""
        ix = self._index
        pos = list(map(ix.position.get, names))
        if None in pos:
            self._pos(names[pos.index(None)])  # raises, naming it
        return list(map(ix.shapes.__getitem__, pos)), list(map(ix.np_dtypes.__getitem__, pos))

    def read_many(self, names: list[str], outs: list) -> None:
        """Read each tensor of ``names`` into the matching numpy array of ``outs`` (its shape
        and dtype, C-contiguous, writable) and verify every bin header and checksum.

        Small tensors that lie one after another in the file are read into their arrays with
        one vectored read per run of up to RUN_TENSORS (the bytes between them, padding and
        headers, into a scratch buffer); any other tensor is read by ``read_into``. An ``out``
        that does not fit its tensor is InvalidArgumentError, before anything is read. On
        DataLossError (naming the first bad tensor) the contents of every ``out`` are unspecified.
        """
        ix = self._index
        if len(names) != len(outs):
            raise InvalidArgumentError(f"read_many: {len(names)} names but {len(outs)} outs")
        pos = list(map(ix.position.get, names))
        if None in pos:
            self._pos(names[pos.index(None)])  # raises, naming it
        sizes = list(map(ix.nbytes.__getitem__, pos))
        if (set(map(type, outs)) <= {np.ndarray} and list(map(_shape_of, outs)) == list(map(ix.shapes.__getitem__, pos))
                and list(map(_dtype_of, outs)) == list(map(ix.np_dtypes.__getitem__, pos))
                and all(map(_c_contiguous, outs)) and all(map(_writeable, outs))):
            # A local file's preadv fills the arrays as they are; other sources take byte views.
            views = outs if getattr(self._src, "takes_arrays", False) else list(map(_flat_bytes, outs))
        else:
            views = [self._target(i, out) for i, out in zip(pos, outs)]  # says which out is wrong
        small = min(_READ_STEP, ix.bin_bytes)
        offsets = list(map(ix.offsets.__getitem__, pos))
        start = 0
        for end in _run_ends(offsets, sizes, small):
            if end - start == 1 and sizes[start] > small:
                self.read_into(names[start], outs[start])
            else:
                self._read_run(pos[start:end], offsets[start:end], sizes[start:end], views[start:end])
            start = end

    def _read_run(self, pos: list[int], offsets: list[int], sizes: list[int], views: list) -> None:
        """One vectored read of tensors that follow each other in the file, then their bin
        headers and checksums checked."""
        ix = self._index
        k = len(pos)
        # Each tensor's gap: from the end of the previous one's data (the first: its own bin
        # header) to its data. The gaps go into one scratch buffer, the data into the views.
        ends = [offsets[0] - fmt.BIN_HEADER_SIZE] + list(map(add, offsets[:-1], sizes[:-1]))
        gaps = list(map(sub, offsets, ends))
        bounds = list(accumulate(gaps, initial=0))
        scratch = memoryview(bytearray(bounds[-1]))
        iov: list = [None] * (2 * k)
        iov[0::2] = list(map(scratch.__getitem__, map(slice, bounds[:-1], bounds[1:])))
        iov[1::2] = views
        self._preadv(iov, ends[0])
        headers = np.frombuffer(scratch, np.uint8)[np.array(bounds[1:])[:, None] + _HEADER_AT]
        want = np.empty((k, fmt.BIN_HEADER_SIZE), np.uint8)
        want[:, 0] = 0xC6
        want[:, 1:] = np.array(sizes, ">u4").view(np.uint8).reshape(k, 4)
        bad = (headers != want).any(axis=1)
        if bad.any():
            j = int(bad.argmax())
            raise self._fail(ix.names[pos[j]], f"no bin32 header of {sizes[j]} bytes before its data at {offsets[j]}")
        got = list(map(xxhash.xxh3_64_intdigest, views))
        if got != list(map(ix.checksums.__getitem__, pos)):
            j = next(j for j, (g, p) in enumerate(zip(got, pos)) if g != ix.checksums[p])
            raise self._checksum_error(pos[j], got[j])

    def iter_chunks(self, name: str, chunk_bytes: int = 64 << 20, *,
                    buffer: Any = None) -> Iterator[memoryview]:
        """Yield the tensor's raw little-endian bytes in read-only views of at most
        ``chunk_bytes``, read into one reused buffer (``buffer``, e.g. pinned memory,
        when given). Each view is valid until the next one is requested.

        The checksum covers the whole tensor, so it is checked after the last chunk:
        a mismatch raises DataLossError from the generator at that point.
        """
        i = self._pos(name)
        if not isinstance(chunk_bytes, int) or chunk_bytes <= 0:
            raise InvalidArgumentError(f"iter_chunks: chunk_bytes must be a positive int, received {chunk_bytes!r}")
        return self._iter_chunks(i, chunk_bytes, buffer)

    def _iter_chunks(self, i: int, chunk_bytes: int, buffer: Any) -> Iterator[memoryview]:
        size = min(chunk_bytes, self._index.nbytes[i])
        if buffer is None:
            staging = memoryview(bytearray(size))
        else:
            try:
                staging = memoryview(buffer)
                staging = staging.cast("B") if staging.format != "B" or staging.ndim != 1 else staging
            except TypeError:
                raise InvalidArgumentError(
                    f"iter_chunks: buffer must be a writable host buffer, received {type(buffer).__name__}") from None
            if staging.readonly or staging.nbytes < size:
                raise InvalidArgumentError(
                    f"iter_chunks: buffer must be writable and hold at least {size} bytes, "
                    f"it holds {staging.nbytes}")
            staging = staging[:size]
        for part in self._read_pieces(i, staging, chunk_bytes):
            if part.nbytes:
                yield part.toreadonly()

    def verify(self) -> list[tuple[str, str | None]]:
        """Check every tensor's bytes against its checksum.

        Returns (name, None) for a good tensor and (name, error message) for a bad
        one, in file order; never raises for corrupt data.
        """
        results: list[tuple[str, str | None]] = []
        for i, name in enumerate(self._index.names):
            try:
                for _ in self._iter_chunks(i, _READ_STEP, None):
                    pass  # one reused 1 MiB buffer: verify() allocates nothing per tensor size
            except DataLossError as e:
                results.append((name, e.message))
            else:
                results.append((name, None))
        return results
