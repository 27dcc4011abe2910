"""TFBundleReader: random access to the tensors of a TF V2 bundle, without TensorFlow.

Opening reads the whole ``.index`` (at most ``MAX_INDEX_BYTES``), checks every
block and entry (``sstable.py``, ``index.py``), then opens every data file and
checks that each entry's bytes lie inside its file. Tensor bytes are read only
when asked for, each tensor on its own, and every read checks the tensor's
masked CRC32C. It offers what varstore's readers offer (``names``, ``shape``,
``dtype``, ``get_tensor``, ``read_into``, ``verify``...), so the Saver, the
``tf.train`` readers and the command line take a bundle wherever they take a
checkpoint.

>>> import numpy as np, os, tempfile
>>> from varstore.checkpoint.tf import write_bundle
>>> p = os.path.join(tempfile.mkdtemp(), "model.ckpt-1")
>>> _ = write_bundle(p, [("w", np.arange(4, dtype="float32"))], fsync=False)
>>> with TFBundleReader(p) as r:
...     r.names(), r.shape("w"), r.get_tensor("w").tolist()
(['w'], (4,), [0.0, 1.0, 2.0, 3.0])
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from devices.errors import DataLossError, InvalidArgumentError, NotFoundError

from ..reader import host_target, key_not_found
from ..store import normalize
from . import dtypes, files, slices, strings
from .crc32c import crc32c, mask
from .index import Index, IndexError_, Stored, Tensor, parse_index
from .sstable import TableError, read_table

MAX_INDEX_BYTES = 256 << 20
# Check each 1 MiB step's CRC right after reading it, while it is in the CPU cache.
_STEP = 1 << 20


class TFBundleReader:
    """Read tensors from the TF bundle at ``prefix`` (``model.ckpt-1000``; its ``.index`` also works).

    Errors: no ``.index`` is NotFoundError; an index or data file that is truncated,
    corrupt or hostile, or a data file missing, is DataLossError naming the file (and
    the tensor where there is one). Tensors of dtypes varstore does not read (quantized,
    resource, variant, sub-byte) are listed; reading one is InvalidArgumentError naming
    it. ``DT_STRING`` tensors come back as arrays of ``bytes`` (dtype object).
    """

    format = "tf"

    def __init__(self, prefix: str | os.PathLike):
        try:
            path = normalize(prefix)
        except TypeError:
            raise InvalidArgumentError(f"TFBundleReader: path must be a str or os.PathLike, received "
                                       f"{type(prefix).__name__}") from None
        self.path: str = files.prefix_of(path)
        self.index_path = files.index_file(self.path)
        self._data: list[Any] = []
        self._verified: set[tuple[int, int]] = set()
        self._index = self._read_index()
        self.extra: dict = {"format": "tf", "num_shards": self._index.num_shards, "producer": self._index.producer}
        try:
            self._open_data()
        except BaseException:
            self.close()
            raise

    # -- opening --------------------------------------------------------------------------------
    def _read_index(self) -> Index:
        src = files.open_file(self.index_path)
        try:
            size = src.size
            if size > MAX_INDEX_BYTES:
                raise DataLossError(f"{self.index_path}: an index of {size} bytes is larger than the "
                                    f"{MAX_INDEX_BYTES} this reader accepts")
            raw = src.pread(size, 0)
            if len(raw) != size:
                raise DataLossError(f"{self.index_path}: file shrank while being read")
        finally:
            src.close()
        try:
            return parse_index(read_table(raw, self.index_path))
        except TableError as e:
            where = f" (after key {e.key!r})" if e.key is not None else ""
            raise DataLossError(f"{self.index_path}: corrupt TF bundle index: {e}{where}") from None
        except IndexError_ as e:
            where = f": tensor {e.key!r}" if e.key is not None else ""
            raise DataLossError(f"{self.index_path}{where}: {e}") from None

    def data_file(self, shard: int) -> str:
        return files.data_file(self.path, shard, self._index.num_shards)

    def _open_data(self) -> None:
        n = self._index.num_shards
        for i in range(n):
            name = self.data_file(i)
            try:
                self._data.append(files.open_file(name))
            except NotFoundError:
                raise DataLossError(f"{self.index_path}: its data file {name} (shard {i} of {n}) is missing") \
                    from None
        claimed = [0] * n
        for t in self._index.tensors.values():
            for p in t.pieces:
                size = self._data[p.shard].size
                if p.offset > size or p.size > size - p.offset:
                    raise DataLossError(f"{self.index_path}: tensor {t.name!r}: its {p.size} bytes at {p.offset} "
                                        f"run past the end of {self.data_file(p.shard)} ({size} bytes)")
                claimed[p.shard] += p.size
        # TF writes each tensor's bytes once. Entries sharing bytes would let a small index claim
        # (and make a reader allocate) many times what the data files hold.
        for i, c in enumerate(claimed):
            if c > self._data[i].size:
                raise DataLossError(f"{self.index_path}: its entries claim {c} bytes of {self.data_file(i)}, which "
                                    f"holds {self._data[i].size}: entries overlap")

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the files. Arrays from get_tensor stay valid (they keep their mapping alive)."""
        data, self._data = self._data, []
        for src in data:
            src.close()

    def __enter__(self) -> TFBundleReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<TFBundleReader {self.path!r}: {len(self._index.tensors)} tensors in {self._index.num_shards} shard(s)>"

    # -- metadata -------------------------------------------------------------------------------
    def _tensor(self, name: str) -> Tensor:
        t = self._index.tensors.get(name) if isinstance(name, str) else None
        if t is None:
            raise key_not_found(name, self._index.tensors, self.path)
        return t

    @property
    def files(self) -> list[str]:
        """The bundle's files: the index, then the data files."""
        return [self.index_path] + [self.data_file(i) for i in range(self._index.num_shards)]

    def names(self) -> list[str]:
        """All tensor names, sorted (slices of partitioned variables appear under the full name)."""
        return sorted(self._index.tensors)

    def has_tensor(self, name: str) -> bool:
        return isinstance(name, str) and name in self._index.tensors

    __contains__ = has_tensor

    def __len__(self) -> int:
        return len(self._index.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._tensor(name).shape

    def dtype(self, name: str) -> np.dtype:
        """numpy dtype (object for strings); InvalidArgumentError for a dtype varstore does not read."""
        t = self._tensor(name)
        if t.dtype is not None:
            return t.dtype
        if t.enum == dtypes.DT_STRING:
            return np.dtype(object)
        raise self._unreadable(t)

    def tf_dtype(self, name: str) -> str:
        """TF's name of the tensor's dtype (``DT_FLOAT``), whatever it is."""
        return dtypes.name(self._tensor(name).enum)

    def nbytes(self, name: str) -> int:
        return self._tensor(name).nbytes

    def is_partitioned(self, name: str) -> bool:
        return self._tensor(name).partitioned

    def file_of(self, name: str) -> str:
        """The data file holding tensor ``name`` (its first slice's, for a partitioned one)."""
        t = self._tensor(name)
        return self.data_file(t.pieces[0].shard) if t.pieces else self.index_path

    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        return {n: list(t.shape) for n, t in self._index.tensors.items()}

    def get_variable_to_dtype_map(self) -> dict[str, np.dtype]:
        return {n: self.dtype(n) for n in self._index.tensors}

    # -- data -----------------------------------------------------------------------------------
    def _unreadable(self, t: Tensor) -> InvalidArgumentError:
        return InvalidArgumentError(f"{self.path}: tensor {t.name!r} has dtype {dtypes.name(t.enum)}, which "
                                    f"varstore does not read (it reads numeric, bool and string tensors)")

    def _fail(self, t: Tensor, p: Stored, msg: str) -> DataLossError:
        return DataLossError(f"{self.data_file(p.shard)}: tensor {t.name!r}: {msg}")

    def _source(self, shard: int) -> Any:
        if not self._data:
            from devices.errors import FailedPreconditionError
            raise FailedPreconditionError(f"TFBundleReader({self.path!r}) is closed")
        return self._data[shard]

    def _read_checked(self, t: Tensor, p: Stored, view: memoryview) -> None:
        """Fill ``view`` (``p.size`` bytes) with the piece's bytes, CRC32C checked step by step.
        Any other ``view`` of at least ``_STEP`` bytes is reused for every step: verify()'s check."""
        src = self._source(p.shard)
        reuse = view.nbytes != p.size
        crc = 0
        for s in range(0, p.size, _STEP):
            n = min(_STEP, p.size - s)
            part = view[:n] if reuse else view[s:s + n]
            if src.preadv([part], p.offset + s) != part.nbytes:
                raise self._fail(t, p, f"short read at {p.offset + s}: the file shrank while being read")
            crc = crc32c(part, crc)
        self._check_crc(t, p, crc)

    def _check_crc(self, t: Tensor, p: Stored, crc: int) -> None:
        if mask(crc) != p.crc32c:
            raise self._fail(t, p, f"CRC32C mismatch (computed {mask(crc):#010x} masked, the index says "
                                   f"{p.crc32c:#010x}): the data is corrupt")

    def _read_strings(self, t: Tensor) -> np.ndarray:
        out = np.empty(t.shape, dtype=object)
        for p in t.pieces:
            raw = bytearray(p.size)
            src = self._source(p.shard)
            if src.preadv([memoryview(raw)], p.offset) != p.size:
                raise self._fail(t, p, "short read: the file shrank while being read")
            try:
                values = strings.decode(bytes(raw), int(np.prod(p.shape, dtype=np.int64)), p.crc32c)
            except strings.StringError as e:
                raise self._fail(t, p, f"string data: {e}") from None
            target = out[slices.index(p.region)] if p.region is not None else out
            target[...] = values.reshape(p.shape)
        return out

    def get_tensor(self, name: str) -> np.ndarray:
        """The tensor as a read-only array: mapped from the file without a copy where it can be
        (a whole tensor in a local file, at an offset aligned for its dtype), else read;
        CRC32C checked either way. Strings: an array of ``bytes``."""
        t = self._tensor(name)
        if t.dtype is None:
            if t.enum == dtypes.DT_STRING:
                out = self._read_strings(t)
                out.flags.writeable = False
                return out
            raise self._unreadable(t)
        if not t.partitioned:
            p = t.pieces[0]
            mm = self._source(p.shard).map()
            if mm is not None and p.offset % t.dtype.itemsize == 0:
                view = memoryview(mm)[p.offset:p.offset + p.size]
                key = (p.shard, p.offset)
                if key not in self._verified:
                    self._check_crc(t, p, crc32c(view))
                    self._verified.add(key)
                return np.frombuffer(view, dtype=np.uint8).view(t.dtype).reshape(t.shape)
        out = self.read_tensor(name)
        out.flags.writeable = False
        return out

    def read_tensor(self, name: str) -> np.ndarray:
        """The tensor as a new, writable array (CRC32C checked)."""
        t = self._tensor(name)
        if t.dtype is None:
            if t.enum == dtypes.DT_STRING:
                return self._read_strings(t)
            raise self._unreadable(t)
        return self.read_into(name, np.empty(t.shape, t.dtype))

    def _target(self, t: Tensor, out: Any) -> np.ndarray:
        if t.dtype is None:
            if t.enum == dtypes.DT_STRING:
                raise InvalidArgumentError(f"read_into: tensor {t.name!r} in {self.path} holds strings; "
                                           f"use get_tensor")
            raise self._unreadable(t)
        view = host_target(out, t.name, self.path, t.shape, t.dtype, t.nbytes)
        return np.frombuffer(view, dtype=np.uint8).view(t.dtype).reshape(t.shape)

    def read_into(self, name: str, out: Any) -> Any:
        """Read a tensor into ``out`` (a C-contiguous array of its shape and dtype, or a writable
        buffer of its size) with no intermediate copy, CRC32C checked. A partitioned tensor is
        assembled from its slices in place. Returns ``out``; on DataLossError its contents are
        unspecified."""
        t = self._tensor(name)
        arr = self._target(t, out)
        flat = arr.reshape(-1).view(np.uint8)
        if not t.partitioned:
            self._read_checked(t, t.pieces[0], flat.data)
            return out
        for p in t.pieces:
            part = arr[slices.index(p.region)]
            if part.flags.c_contiguous:  # e.g. rows of a row-partitioned variable: straight in
                self._read_checked(t, p, part.reshape(-1).view(np.uint8).data)
            else:
                tmp = np.empty(p.shape, t.dtype)
                self._read_checked(t, p, tmp.reshape(-1).view(np.uint8).data)
                part[...] = tmp
        return out

    def read_slice(self, name: str, begin: Any, size: Any) -> np.ndarray:
        """``tensor[begin[0]:begin[0]+size[0], ...]`` as a new array, reading only the stored
        pieces that overlap it (each whole: its CRC covers all of it). This restores a tensor
        into variables partitioned differently from the ones that saved it.

        >>> import numpy as np, os, tempfile
        >>> from varstore.checkpoint.tf import write_bundle
        >>> p = os.path.join(tempfile.mkdtemp(), "m")
        >>> _ = write_bundle(p, [("w", np.arange(12, dtype="int32").reshape(4, 3))], fsync=False)
        >>> TFBundleReader(p).read_slice("w", [1, 0], [2, 3]).tolist()
        [[3, 4, 5], [6, 7, 8]]
        """
        t = self._tensor(name)
        begin, size = [int(b) for b in begin], [int(s) for s in size]
        want = slices.region(tuple(zip(begin, size)), t.shape)
        if want is None:
            raise InvalidArgumentError(f"read_slice: begin {begin} size {size} is not inside tensor {name!r} "
                                       f"of shape {list(t.shape)}")
        if t.dtype is None:
            return np.array(self.read_tensor(name)[slices.index(want)])
        out = np.empty(tuple(e - b for b, e in want), t.dtype)
        for p in t.pieces:
            have = p.region or tuple((0, d) for d in t.shape)
            common = tuple((max(a0, b0), min(a1, b1)) for (a0, a1), (b0, b1) in zip(have, want))
            if any(b >= e for b, e in common) and out.size:
                continue
            tmp = np.empty(p.shape, t.dtype)
            self._read_checked(t, p, tmp.reshape(-1).view(np.uint8).data)
            src = tuple(slice(b - h, e - h) for (b, e), (h, _) in zip(common, have))
            dst = tuple(slice(b - w, e - w) for (b, e), (w, _) in zip(common, want))
            out[dst] = tmp[src]
        return out

    def verify(self) -> list[tuple[str, str | None]]:
        """(name, None) for each good tensor, (name, error message) for each bad one, by name;
        reads each piece through one reused 1 MiB buffer; never raises for corrupt data."""
        results: list[tuple[str, str | None]] = []
        buf = memoryview(bytearray(_STEP))
        for name in self.names():
            t = self._index.tensors[name]
            try:
                if t.enum == dtypes.DT_STRING:
                    self._read_strings(t)
                else:
                    for p in t.pieces:
                        self._read_checked(t, p, buf)
            except DataLossError as e:
                results.append((name, e.message))
            else:
                results.append((name, None))
        return results


__all__ = ["TFBundleReader", "MAX_INDEX_BYTES"]
