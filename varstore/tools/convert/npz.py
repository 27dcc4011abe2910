"""numpy ``.npz``: read with ``allow_pickle=False`` after every member's header has been
checked (an archive holding object arrays is refused before anything is loaded).
numpy has no bfloat16: such a tensor is stored as its uint16 bits, and a member
``__varstore_dtypes__`` (JSON, no pickle) records which."""
from __future__ import annotations

import io
import json
import math
import zipfile
from typing import Any

import numpy as np

from devices.dtypes import bfloat16
from devices.errors import DataLossError, InvalidArgumentError

from ...checkpoint.store import AtomicFile
from ...progress import Progress
from .base import CHUNK, Plan, SeekableOutWriter, Source, c_order, tensor_info

_NPZ_DTYPES_KEY = "__varstore_dtypes__"
_NPZ_MAX_NOTE = 16 << 20
_NPY_MAX_HEADER = 100_000


def _read_npy_header(f: Any, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            return fmt.read_array_header_1_0(f, max_header_size=_NPY_MAX_HEADER)
        if version == (2, 0):
            return fmt.read_array_header_2_0(f, max_header_size=_NPY_MAX_HEADER)
        private = getattr(fmt, "_read_array_header", None)
        if private is None:
            raise ValueError(f".npy format version {version} is not supported")
        return private(f, version, max_header_size=_NPY_MAX_HEADER)
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile) as e:
        raise DataLossError(f"{where}: not a valid .npy array header ({e})") from None


class NpzSource(Source):
    """A numpy ``.npz``: every member's header is checked before any data is loaded."""

    format = "npz"

    def __init__(self, path: str):
        super().__init__(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise DataLossError(f"{path}: not a readable .npz (zip) archive: {e}") from None
        try:
            self._scan()
        except BaseException:
            self._zip.close()
            raise

    def _scan(self) -> None:
        path = self.path
        dtypes_note: dict[str, str] = {}
        members: dict[str, tuple[str, tuple[int, ...], np.dtype]] = {}
        for zi in self._zip.infolist():
            if zi.is_dir():
                continue
            if not zi.filename.endswith(".npy"):
                raise InvalidArgumentError(f"{path}: member {zi.filename!r} is not a .npy array; refused "
                                           f"(np.savez writes only .npy members)")
            key = zi.filename[:-4]
            where = f"{path}: member {zi.filename!r}"
            try:
                with self._zip.open(zi) as f:
                    shape, fortran, dtype = _read_npy_header(f, where)
                    header_bytes = f.tell()
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as e:
                raise DataLossError(f"{where}: cannot be read: {e}") from None
            if dtype.hasobject:
                raise InvalidArgumentError(
                    f"{path}: array {key!r} holds Python objects (dtype {dtype}), which only pickle can load; "
                    f"refused: varstore never unpickles (nothing was loaded)")
            if key == _NPZ_DTYPES_KEY:
                dtypes_note = self._read_note(zi, dtype, shape)
                continue
            # The header's shape must account for exactly the member's bytes: a header that claims
            # more would make numpy allocate it all before finding the data missing.
            declared = math.prod(shape) * dtype.itemsize
            if declared != zi.file_size - header_bytes:
                raise DataLossError(f"{where}: its header declares {declared} bytes of data "
                                    f"(shape {shape}, {dtype}), the member holds {zi.file_size - header_bytes}")
            members[key] = (zi.filename, shape, dtype)
        for key, name in dtypes_note.items():
            if name != "bfloat16":
                raise DataLossError(f"{path}: {_NPZ_DTYPES_KEY} names dtype {name!r} for {key!r}; only "
                                    f"'bfloat16' is recorded there")
            if key not in members or members[key][2].newbyteorder("<") != np.dtype("<u2"):
                raise DataLossError(f"{path}: {_NPZ_DTYPES_KEY} says {key!r} is bfloat16 bits, but the archive "
                                    f"has no uint16 array of that name")
        self._members = {}
        for key in sorted(members):
            filename, shape, dtype = members[key]
            stored = dtype
            if key in dtypes_note:
                dtype = bfloat16
            info = tensor_info(path, key, dtype, shape)
            self.infos.append(info)
            self._members[key] = (filename, stored, dtype)

    def _read_note(self, zi: zipfile.ZipInfo, dtype: np.dtype, shape: tuple) -> dict[str, str]:
        where = f"{self.path}: {_NPZ_DTYPES_KEY}"
        if dtype.kind != "U" or shape != () or zi.file_size > _NPZ_MAX_NOTE:
            raise DataLossError(f"{where}: must be a small 0-d unicode array holding JSON")
        with self._zip.open(zi) as f:
            text = str(np.lib.format.read_array(f, allow_pickle=False, max_header_size=_NPY_MAX_HEADER))
        try:
            note = json.loads(text)
        except ValueError as e:
            raise DataLossError(f"{where}: not JSON ({e})") from None
        if not isinstance(note, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in note.items()):
            raise DataLossError(f"{where}: must map names to dtype names")
        return note

    def array(self, name: str) -> Any:
        filename, stored, dtype = self._members[name]
        try:
            with self._zip.open(filename) as f:
                a = np.lib.format.read_array(f, allow_pickle=False, max_header_size=_NPY_MAX_HEADER)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise DataLossError(f"{self.path}: array {name!r} cannot be read: {e}") from None
        if dtype == bfloat16:
            a = c_order(a.astype("<u2", copy=False)).view(bfloat16)
        return a

    def close(self) -> None:
        self._zip.close()


def _npy_header(f: Any, array: np.ndarray) -> None:
    fmt = np.lib.format
    d = fmt.header_data_from_array_1_0(array)
    try:
        fmt.write_array_header_1_0(f, d)
    except ValueError:  # a header too long for version 1.0
        fmt.write_array_header_2_0(f, d)


def write_npz(dst: str, src: Source, plan: Plan, bar: Progress, fsync: bool, extra: dict) -> None:
    note: dict[str, str] = {}
    names = {new for new, _ in plan}
    if _NPZ_DTYPES_KEY in names:
        raise InvalidArgumentError(f"convert: {_NPZ_DTYPES_KEY!r} is reserved in .npz files; rename that tensor")
    with AtomicFile(dst, fsync, what=".npz file") as out, io.BufferedWriter(SeekableOutWriter(out)) as fobj, \
            zipfile.ZipFile(fobj, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for new, info in plan:
            a = np.asarray(src.array(info.name))
            if a.dtype == bfloat16:
                a = a.view(np.uint16)
                note[new] = "bfloat16"
            a = c_order(a)
            with z.open(new + ".npy", "w", force_zip64=True) as f:
                _npy_header(f, a)
                flat = a.reshape(-1).view(np.uint8)
                for start in range(0, flat.nbytes, CHUNK):
                    part = flat[start:start + CHUNK]
                    f.write(memoryview(part))  # type: ignore[arg-type]
                    bar.update(part.nbytes)
        if note:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.array(json.dumps(note, sort_keys=True)), allow_pickle=False)
            z.writestr(_NPZ_DTYPES_KEY + ".npy", buf.getvalue())
