"""Convert tensors between varstore checkpoints, safetensors, numpy ``.npz`` and PyTorch files.

``convert(src, dst)`` reads every tensor of ``src`` and writes them, renamed
by ``name_map``, to ``dst``; the command line is ``varstore convert SRC DST``.
Every tensor arrives byte-identical (bfloat16 included); a dtype the
destination cannot hold is refused with an error naming the tensor.

Formats, told apart by the first bytes of an existing file, else by the
extension (a destination: ``.safetensors``, ``.npz``, ``.pt``/``.pth``/``.bin``;
anything else is a varstore checkpoint):

- ``varstore``: our checkpoint (tensors mapped from the file, checksums verified).
- ``safetensors``: read by parsing its header and mapping the file (no copy,
  no dependency); written by streaming, with ``__metadata__`` carried over.
- ``npz``: read with ``allow_pickle=False``, after every member's header has
  been checked: an archive holding object (pickled) arrays is refused before
  anything is loaded. numpy has no bfloat16, so a bfloat16 tensor is stored
  as its uint16 bit pattern, and a member ``__varstore_dtypes__`` (a JSON
  string, no pickle) records which; reading such an archive restores the
  dtype, and plain numpy users get the bits (``a.view(ml_dtypes.bfloat16)``).
- ``torch``: a ``state_dict`` (nested dicts are flattened with ``/``), read
  only with ``torch.load(weights_only=True)``: a payload that holds
  anything but tensors and plain containers is refused, never executed.

Names: ``name_map`` maps old names to new ones (TF 1.x's assignment-map
style). An entry whose key ends with ``/`` renames a whole scope
(``{"old_scope/": "new_scope/"}``); an empty new name drops the tensor; a
TF-style ``:0`` suffix on either side is ignored. An entry that matches no
tensor is an error, as are two tensors mapped to one name.

>>> import os, tempfile, numpy as np
>>> from varstore.checkpoint import CheckpointReader, write_checkpoint
>>> d = tempfile.mkdtemp()
>>> _ = write_checkpoint(os.path.join(d, "model.ckpt"), [("dense/kernel", np.eye(2, dtype="float32"))],
...                      fsync=False)
>>> r = convert(os.path.join(d, "model.ckpt"), os.path.join(d, "model.safetensors"),
...             name_map={"dense/": "layer1/"}, progress=False)
>>> r.tensors, r.dst_format
(1, 'safetensors')
>>> _ = convert(os.path.join(d, "model.safetensors"), os.path.join(d, "back.ckpt"), progress=False)
>>> CheckpointReader(os.path.join(d, "back.ckpt")).get_tensor("layer1/kernel").tolist()
[[1.0, 0.0], [0.0, 1.0]]
"""
from __future__ import annotations

import io
import json
import logging
import math
import mmap
import os
import struct
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.dtypes import as_dtype, bfloat16
from devices.errors import DataLossError, InvalidArgumentError, NotFoundError

from ..progress import Progress, format_bytes

log = logging.getLogger("varstore")

__all__ = ["convert", "ConvertResult", "detect_format", "parse_name_map", "read_name_map_file",
           "open_tensors", "FORMATS"]

FORMATS = ("varstore", "safetensors", "npz", "torch")
_EXTENSIONS = {".safetensors": "safetensors", ".npz": "npz", ".pt": "torch", ".pth": "torch", ".bin": "torch"}
_CHUNK = 64 << 20

# safetensors dtype names <-> ours (little-endian throughout).
_ST_TO_NAME = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "F16": "float16",
               "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32", "F64": "float64",
               "I64": "int64", "U64": "uint64", "C64": "complex64"}
_NAME_TO_ST = {v: k for k, v in _ST_TO_NAME.items()}
_ST_MAX_HEADER = 100_000_000  # the safetensors library's own bound

_NPZ_DTYPES_KEY = "__varstore_dtypes__"
_NPZ_MAX_NOTE = 16 << 20
_NPY_MAX_HEADER = 100_000


# -- formats ---------------------------------------------------------------------------------
def _sniff(path: str) -> str | None:
    """The format from a file's first bytes, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = os.fstat(f.fileno()).st_size
    except IsADirectoryError:
        raise InvalidArgumentError(f"{path} is a directory, not a tensor file "
                                   f"(for a Saver directory, pass tf.train.latest_checkpoint(dir))") from None
    except FileNotFoundError:
        return None
    from ..checkpoint.format import HEADER_PREFIX
    if head.startswith(HEADER_PREFIX):
        return "varstore"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return None
    if len(head) >= 9:
        n = struct.unpack("<Q", head[:8])[0]
        # A plausible header size, then a JSON object (or, for a .safetensors file, anything:
        # the reader then says what is wrong with its header).
        if 2 <= n <= min(_ST_MAX_HEADER, size - 8) and (
                head[8:9] == b"{" or os.path.splitext(path)[1].lower() == ".safetensors"):
            return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch"  # a legacy (non-zip) torch.save pickle; torch.load(weights_only=True) judges it
    return None


def detect_format(path: str | os.PathLike, *, for_writing: bool = False) -> str:
    """``"varstore"``, ``"safetensors"``, ``"npz"`` or ``"torch"`` for ``path``.

    An existing file is recognized by its first bytes (its extension when they
    are ambiguous); a destination by its extension, a varstore checkpoint when
    it has none of the known ones. An existing file of no known format raises
    InvalidArgumentError naming it.

    >>> detect_format("model.safetensors", for_writing=True), detect_format("model.ckpt-1000", for_writing=True)
    ('safetensors', 'varstore')
    """
    path = os.fsdecode(os.fspath(path))
    ext = os.path.splitext(path)[1].lower()
    if for_writing:
        return _EXTENSIONS.get(ext, "varstore")
    if not os.path.exists(path):
        raise NotFoundError(f"{path}: no such file")
    found = _sniff(path)
    if found is not None:
        return found
    raise InvalidArgumentError(
        f"cannot tell the format of {path}: its first bytes match none of varstore checkpoint, safetensors, "
        f"numpy .npz or PyTorch (zip or pickle) files (extension {ext or 'none'!r}); pass the format explicitly "
        f"if it is one of {list(FORMATS)}")


def _check_format(fmt: str, what: str) -> str:
    if fmt not in FORMATS:
        raise InvalidArgumentError(f"{what}: unknown format {fmt!r}; expected one of {list(FORMATS)}")
    return fmt


# -- name maps ----------------------------------------------------------------------------------
def parse_name_map(entries: Iterable[str], *, source: str = "--map") -> dict[str, str]:
    """``{"old": "new"}`` from ``old=new`` strings (blank lines and ``#`` comments skipped).

    The first ``=`` splits a line; an empty new name drops the tensor.

    >>> parse_name_map(["weights=params", "  # a comment", "old_scope/ = new_scope/"])
    {'weights': 'params', 'old_scope/': 'new_scope/'}
    """
    out: dict[str, str] = {}
    for lineno, raw in enumerate(entries, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise InvalidArgumentError(f"{source}: line {lineno}: expected old=new, received {raw.strip()!r}")
        old, new = (part.strip() for part in line.split("=", 1))
        if not old:
            raise InvalidArgumentError(f"{source}: line {lineno}: empty old name in {raw.strip()!r}")
        if old in out and out[old] != new:
            raise InvalidArgumentError(f"{source}: line {lineno}: {old!r} is mapped twice "
                                       f"({out[old]!r} and {new!r})")
        out[old] = new
    return out


def read_name_map_file(path: str | os.PathLike) -> dict[str, str]:
    """A name map from a file of ``old=new`` lines (UTF-8)."""
    path = os.fsdecode(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            return parse_name_map(f, source=path)
    except FileNotFoundError:
        raise NotFoundError(f"name map file {path}: no such file") from None
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(f"name map file {path}: not UTF-8 text ({e})") from None


def _strip0(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


class _Renamer:
    """Applies a name map: exact names first, then the longest matching scope prefix."""

    def __init__(self, name_map: Mapping[str, str] | None, names: Sequence[str]):
        self.exact: dict[str, str] = {}
        self.prefixes: list[tuple[str, str]] = []
        if name_map is None:
            return
        if not isinstance(name_map, Mapping):
            raise InvalidArgumentError(f"convert: name_map must be a dict of old -> new names, "
                                       f"received {type(name_map).__name__}")
        present = set(names)
        for old, new in name_map.items():
            if not isinstance(old, str) or not isinstance(new, str):
                raise InvalidArgumentError(f"convert: name_map entries must be str -> str, received {old!r}: {new!r}")
            key = old if old in present else _strip0(old)
            new = _strip0(new)
            if key.endswith("/"):
                if new and not new.endswith("/"):
                    raise InvalidArgumentError(
                        f"convert: name_map entry {old!r} renames a scope; its new name {new!r} must end with '/' "
                        f"(or be empty, to drop the scope)")
                self.prefixes.append((key, new))
            else:
                self.exact[key] = new
        self.prefixes.sort(key=lambda kv: -len(kv[0]))
        unmatched = [k for k in self.exact if k not in present]
        unmatched += [p for p, _ in self.prefixes if not any(n.startswith(p) for n in names)]
        if unmatched:
            import difflib
            hints = []
            for k in unmatched[:5]:
                close = difflib.get_close_matches(k, list(present), n=3)
                hints.append(f"{k!r}" + (f" (closest: {close})" if close else ""))
            raise InvalidArgumentError(f"convert: name_map entries match no tensor in the source: "
                                       f"{', '.join(hints)}" + (" ..." if len(unmatched) > 5 else ""))

    def __call__(self, name: str) -> str | None:
        """The new name, or None when the tensor is dropped."""
        if name in self.exact:
            return self.exact[name] or None
        for prefix, new in self.prefixes:
            if name.startswith(prefix):
                return (new + name[len(prefix):]) if new else None
        return name


# -- sources: (name, dtype, shape, nbytes) up front, arrays on demand ---------------------------------
@dataclass
class TensorInfo:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    nbytes: int


class _Source:
    """Tensors of one file: ``infos`` known at open, ``array(name)`` loaded (mapped where possible) on demand."""

    format = ""

    def __init__(self, path: str):
        self.path = path
        self.infos: list[TensorInfo] = []
        self.metadata: dict[str, Any] = {}

    def array(self, name: str) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _info(path: str, name: str, dtype: Any, shape: Any) -> TensorInfo:
    try:
        dt = as_dtype(dtype)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"{path}: tensor {name!r}: {e.message}") from None
    shape = tuple(int(s) for s in shape)
    return TensorInfo(name, dt, shape, math.prod(shape) * dt.itemsize)


class _VarstoreSource(_Source):
    format = "varstore"

    def __init__(self, path: str):
        super().__init__(path)
        from ..checkpoint import CheckpointReader
        self._reader = CheckpointReader(path)
        r = self._reader
        self.infos = [TensorInfo(n, r.dtype(n), tuple(r.shape(n)), r.nbytes(n)) for n in r.names()]
        self.metadata = dict(r.extra)

    def array(self, name: str) -> Any:
        return self._reader.get_tensor(name)  # mapped from the file, checksum verified

    def close(self) -> None:
        self._reader.close()


class _SafetensorsSource(_Source):
    """The safetensors layout: u64 header size, a JSON header, then the data. Parsed and
    validated here; tensors are read-only views of a memory map."""

    format = "safetensors"

    def __init__(self, path: str):
        super().__init__(path)
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._open()
        except BaseException:
            os.close(self._fd)
            raise

    def _bad(self, msg: str) -> DataLossError:
        return DataLossError(f"{self.path}: not a valid safetensors file: {msg}")

    def _open(self) -> None:
        size = os.fstat(self._fd).st_size
        if size < 8:
            raise self._bad(f"{size} bytes, too short for a header")
        (n,) = struct.unpack("<Q", os.pread(self._fd, 8, 0))
        if n > _ST_MAX_HEADER or 8 + n > size:
            raise self._bad(f"header of {n} bytes does not fit (file of {size} bytes, at most {_ST_MAX_HEADER})")
        raw = os.pread(self._fd, n, 8)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise self._bad(f"header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise self._bad("header is not a JSON object")
        meta = header.pop("__metadata__", None)
        if meta is not None:
            if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in meta.items()):
                raise self._bad("__metadata__ must map strings to strings")
            self.metadata = {"safetensors_metadata": meta}
        self._base = 8 + n
        data_len = size - self._base
        spans = []
        infos = []
        for name, entry in header.items():
            if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                    and isinstance(entry.get("shape"), list)
                    and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2):
                raise self._bad(f"tensor {name!r}: needs dtype, shape and data_offsets [begin, end]")
            shape, offs, st = entry["shape"], entry["data_offsets"], entry["dtype"]
            if not all(type(s) is int and s >= 0 for s in shape) or not all(type(o) is int for o in offs):
                raise self._bad(f"tensor {name!r}: shape and offsets must be non-negative integers")
            if st not in _ST_TO_NAME:
                raise InvalidArgumentError(f"{self.path}: tensor {name!r} has safetensors dtype {st}, "
                                           f"which varstore does not support (supported: {sorted(_ST_TO_NAME)})")
            info = _info(self.path, name, _ST_TO_NAME[st], shape)
            begin, end = offs
            if not 0 <= begin <= end <= data_len:
                raise self._bad(f"tensor {name!r}: data_offsets {offs} outside the {data_len} data bytes")
            if end - begin != info.nbytes:
                raise self._bad(f"tensor {name!r}: {end - begin} bytes of data, but shape {list(shape)} "
                                f"{st} needs {info.nbytes}")
            spans.append((begin, end, name))
            infos.append((begin, info))
        spans.sort()
        end, last = 0, ""
        for b0, e0, name in spans:
            if b0 < e0:  # empty tensors take no bytes and overlap nothing
                if b0 < end:
                    raise self._bad(f"tensors {last!r} and {name!r} overlap")
                end, last = e0, name
        infos.sort(key=lambda bi: bi[0])  # file order: the data is then read front to back
        self.infos = [i for _, i in infos]
        self._by_name = {i.name: i for i in self.infos}
        self._offsets = {name: (b, e) for b, e, name in spans}
        self._mm: mmap.mmap | None = None

    def _map(self) -> memoryview:
        if self._mm is None:
            size = os.fstat(self._fd).st_size
            flags = mmap.MAP_SHARED
            # The whole file is read once, front to back: fault it in up front (far cheaper than a
            # page fault per 4 KiB) unless it is too big to sit in memory at once.
            if hasattr(mmap, "MAP_POPULATE") and size <= (4 << 30):
                flags |= mmap.MAP_POPULATE
            self._mm = mmap.mmap(self._fd, 0, flags=flags, prot=mmap.PROT_READ) if size else None
            if self._mm is not None and hasattr(self._mm, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
                self._mm.madvise(mmap.MADV_SEQUENTIAL)
        return memoryview(self._mm) if self._mm is not None else memoryview(b"")

    def array(self, name: str) -> Any:
        info = self._by_name[name]
        b, e = self._offsets[name]
        view = self._map()[self._base + b:self._base + e]
        return np.frombuffer(view, dtype=np.uint8).view(info.dtype.newbyteorder("<")
                                                        if info.dtype != bfloat16 else info.dtype).reshape(info.shape)

    def close(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass  # arrays still view it; it is unmapped when the last one goes
            self._mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


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


class _NpzSource(_Source):
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
            info = _info(path, key, dtype, shape)
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
            a = _c_order(a.astype("<u2", copy=False)).view(bfloat16)
        return a

    def close(self) -> None:
        self._zip.close()


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InvalidArgumentError("reading or writing PyTorch files needs torch (pip install torch)") from None
    return torch


class _TorchSource(_Source):
    """A ``state_dict`` loaded with ``torch.load(weights_only=True)`` (memory-mapped where torch can)."""

    format = "torch"

    def __init__(self, path: str):
        super().__init__(path)
        torch = _torch()
        is_zip = zipfile.is_zipfile(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
        except Exception as e:  # noqa: BLE001 - sorted below; no pickle module is imported here
            if type(e).__name__ != "UnpicklingError":  # torch's refusal (pickle.UnpicklingError)
                if isinstance(e, (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, struct.error,
                                  MemoryError)):
                    raise DataLossError(f"{path}: not a readable PyTorch file: {type(e).__name__}: "
                                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
                raise
            msg = str(e)
            if "weights only" in msg.lower() or "weights_only" in msg.lower():
                # torch's message suggests weights_only=False; keep only what it found.
                found = [ln.strip() for ln in msg.splitlines()
                         if "GLOBAL" in ln or "Unsupported" in ln or "unsupported" in ln]
                raise InvalidArgumentError(
                    f"{path}: refused: the file holds Python objects other than tensors and plain containers, "
                    f"which could run code when unpickled; varstore loads PyTorch files only with "
                    f"torch.load(weights_only=True), and nothing in it was executed"
                    + (f" ({found[0]})" if found else "")) from None
            raise DataLossError(f"{path}: not a readable PyTorch file: {msg.splitlines()[0] if msg else e}") from None
        self._tensors: dict[str, Any] = {}
        skipped: list[str] = []
        self._flatten(obj, "", skipped, torch)
        if skipped:
            log.warning("%s: skipped %d entries that are not tensors: %s%s", path, len(skipped),
                        ", ".join(skipped[:5]), " ..." if len(skipped) > 5 else "")
        if not self._tensors:
            raise InvalidArgumentError(f"{path}: holds no tensors (expected a state_dict: a dict of names to tensors)")
        for name, t in self._tensors.items():
            self.infos.append(_info(path, name, _torch_dtype_name(path, name, t), tuple(t.shape)))

    def _flatten(self, obj: Any, prefix: str, skipped: list, torch: Any) -> None:
        if isinstance(obj, torch.Tensor):
            name = prefix or "tensor"
            if obj.layout != torch.strided:
                raise InvalidArgumentError(f"{self.path}: tensor {name!r} is {obj.layout}; only dense tensors "
                                           f"convert")
            self._tensors[name] = obj
        elif isinstance(obj, Mapping):
            for k, v in obj.items():
                self._flatten(v, f"{prefix}/{k}" if prefix else str(k), skipped, torch)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                self._flatten(v, f"{prefix}/{i}" if prefix else str(i), skipped, torch)
        else:
            skipped.append(prefix or repr(type(obj).__name__))

    def array(self, name: str) -> Any:
        from devices.backends.cpu import host_array
        t = self._tensors[name].detach()
        return host_array(t)  # a view of torch's (mapped) storage; bfloat16 through DLPack


def _torch_dtype_name(path: str, name: str, t: Any) -> str:
    s = str(t.dtype).replace("torch.", "")
    names = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
             "short": "int16", "cfloat": "complex64", "cdouble": "complex128"}
    s = names.get(s, s)
    if s not in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                 "bfloat16", "float32", "float64", "complex64", "complex128"):
        raise InvalidArgumentError(f"{path}: tensor {name!r} has dtype {t.dtype}, which varstore does not support")
    return s


_SOURCES: dict[str, Callable[[str], _Source]] = {
    "varstore": _VarstoreSource, "safetensors": _SafetensorsSource, "npz": _NpzSource, "torch": _TorchSource,
}


def open_tensors(path: str | os.PathLike, fmt: str | None = None) -> _Source:
    """Open a tensor file of any supported format for reading (a context manager).

    ``src.infos`` lists each tensor's name, dtype, shape and bytes; ``src.array(name)``
    returns it (mapped from the file where the format allows: varstore,
    safetensors, torch zip files).
    """
    path = os.fsdecode(os.fspath(path))
    fmt = _check_format(fmt, "open_tensors") if fmt else detect_format(path)
    if not os.path.isfile(path):
        raise NotFoundError(f"{path}: no such file")
    try:
        return _SOURCES[fmt](path)
    except OSError as e:
        raise NotFoundError(f"{path}: cannot be read: {e.strerror or e}") from None


# -- writing ------------------------------------------------------------------------------------
def _c_order(a: np.ndarray) -> np.ndarray:
    """``a`` in C order, copied only if needed (np.ascontiguousarray would turn a 0-d array into 1-d)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def _le_bytes(a: np.ndarray) -> np.ndarray:
    """``a``'s C-order little-endian bytes as a flat uint8 array (a view when it already is)."""
    dt = a.dtype
    if dt.itemsize > 1 and dt != bfloat16 and (dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big")):
        a = a.astype(dt.newbyteorder("<"))
    return _c_order(a).reshape(-1).view(np.uint8)


def _write_all(fd: int, view: memoryview) -> None:
    while view.nbytes:
        n = os.write(fd, view[:0x7FFFF000])
        view = view[n:]


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class _AtomicFile:
    """A temporary file beside ``path``, renamed over it only when complete (fsynced if asked)."""

    def __init__(self, path: str, fsync: bool):
        from ..checkpoint.format import temp_name
        self.path, self.fsync = path, fsync
        self.directory = os.path.dirname(os.path.abspath(path))
        self.tmp = os.path.join(self.directory, temp_name(os.path.basename(path)))
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)

    def __enter__(self) -> _AtomicFile:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            try:
                if self.fsync:
                    os.fsync(self.fd)
            finally:
                os.close(self.fd)
            os.replace(self.tmp, self.path)
            if self.fsync:
                _fsync_dir(self.directory)
            return
        os.close(self.fd)
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class _FdWriter(io.RawIOBase):
    """A writable file object over a descriptor that counts bytes into a progress bar."""

    def __init__(self, fd: int, bar: Progress):
        self._fd, self._bar = fd, bar

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        _write_all(self._fd, view)
        self._bar.update(view.nbytes)
        return view.nbytes


Plan = list[tuple[str, TensorInfo]]  # (new name, source tensor), in write order


def _write_varstore(dst: str, src: _Source, plan: Plan, bar: Progress, fsync: bool, extra: dict) -> None:
    from ..checkpoint import write_checkpoint

    def tensors() -> Iterator[tuple[str, Any]]:
        # The writer takes a tensor only after it has written the previous one.
        pending = 0
        for new, info in plan:
            if pending:
                bar.update(pending)
            yield new, src.array(info.name)
            pending = info.nbytes
        bar.update(pending)

    write_checkpoint(dst, tensors(), extra=extra, fsync=fsync)


def _write_safetensors(dst: str, src: _Source, plan: Plan, bar: Progress, fsync: bool, extra: dict) -> None:
    header: dict[str, Any] = {}
    meta = src.metadata.get("safetensors_metadata")
    header["__metadata__"] = dict(meta) if isinstance(meta, dict) else {"format": "pt"}
    pos = 0
    for new, info in plan:
        st = _NAME_TO_ST.get(info.dtype.name)
        if st is None:
            raise InvalidArgumentError(f"convert: tensor {info.name!r} has dtype {info.dtype.name}, which "
                                       f"safetensors cannot store (it stores {sorted(_NAME_TO_ST)})")
        header[new] = {"dtype": st, "shape": list(info.shape), "data_offsets": [pos, pos + info.nbytes]}
        pos += info.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-(8 + len(raw)) % 8)  # the data starts 8-byte aligned, as the safetensors library writes it
    with _AtomicFile(dst, fsync) as out:
        _write_all(out.fd, memoryview(struct.pack("<Q", len(raw)) + raw))
        for _new, info in plan:
            flat = _le_bytes(np.asarray(src.array(info.name)))
            if flat.nbytes != info.nbytes:
                raise DataLossError(f"{src.path}: tensor {info.name!r} yielded {flat.nbytes} bytes, "
                                    f"expected {info.nbytes}")
            view = memoryview(flat)  # type: ignore[arg-type]  # numpy arrays are buffers
            for start in range(0, flat.nbytes, _CHUNK):
                part = view[start:start + _CHUNK]
                _write_all(out.fd, part)
                bar.update(part.nbytes)


def _npy_header(f: Any, array: np.ndarray) -> None:
    fmt = np.lib.format
    d = fmt.header_data_from_array_1_0(array)
    try:
        fmt.write_array_header_1_0(f, d)
    except ValueError:  # a header too long for version 1.0
        fmt.write_array_header_2_0(f, d)


def _write_npz(dst: str, src: _Source, plan: Plan, bar: Progress, fsync: bool, extra: dict) -> None:
    note: dict[str, str] = {}
    names = {new for new, _ in plan}
    if _NPZ_DTYPES_KEY in names:
        raise InvalidArgumentError(f"convert: {_NPZ_DTYPES_KEY!r} is reserved in .npz files; rename that tensor")
    with _AtomicFile(dst, fsync) as out, os.fdopen(os.dup(out.fd), "wb") as fobj, \
                zipfile.ZipFile(fobj, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for new, info in plan:
            a = np.asarray(src.array(info.name))
            if a.dtype == bfloat16:
                a = a.view(np.uint16)
                note[new] = "bfloat16"
            a = _c_order(a)
            with z.open(new + ".npy", "w", force_zip64=True) as f:
                _npy_header(f, a)
                flat = a.reshape(-1).view(np.uint8)
                for start in range(0, flat.nbytes, _CHUNK):
                    part = flat[start:start + _CHUNK]
                    f.write(memoryview(part))  # type: ignore[arg-type]
                    bar.update(part.nbytes)
        if note:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.array(json.dumps(note, sort_keys=True)), allow_pickle=False)
            z.writestr(_NPZ_DTYPES_KEY + ".npy", buf.getvalue())


def _write_torch(dst: str, src: _Source, plan: Plan, bar: Progress, fsync: bool, extra: dict) -> None:
    torch = _torch()
    state: dict[str, Any] = {}
    with warnings.catch_warnings():
        # Arrays mapped read-only from the source: torch warns that it could write them; it only reads.
        warnings.simplefilter("ignore", UserWarning)
        for new, info in plan:
            a = np.asarray(src.array(info.name))
            if a.size == 0:
                # An empty view may start where the next tensor starts (safetensors packs them):
                # torch.save refuses two storages at one address with different dtypes.
                a = np.empty(a.shape, a.dtype)
            if a.dtype == bfloat16:
                state[new] = torch.from_numpy(_c_order(a).view(np.uint16)).view(torch.bfloat16)
            else:
                state[new] = torch.from_numpy(a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("=")))
    with _AtomicFile(dst, fsync) as out:
        torch.save(state, _FdWriter(out.fd, bar))


_WRITERS = {"varstore": _write_varstore, "safetensors": _write_safetensors, "npz": _write_npz,
            "torch": _write_torch}


# -- the entry point ----------------------------------------------------------------------------------------
@dataclass
class ConvertResult:
    """What ``convert`` did."""

    src: str
    dst: str
    src_format: str
    dst_format: str
    tensors: int
    nbytes: int
    seconds: float
    dropped: list[str] = field(default_factory=list)


def convert(src: str | os.PathLike, dst: str | os.PathLike, name_map: Mapping[str, str] | None = None, *,
            src_format: str | None = None, dst_format: str | None = None, progress: bool | None = None,
            overwrite: bool = False, fsync: bool = True) -> ConvertResult:
    """Copy every tensor of ``src`` into a new file ``dst``, renamed by ``name_map``, byte-identical.

    ``src`` may also be a Saver's directory (its latest checkpoint is converted).

    Formats come from the files (see the module docstring) unless ``src_format``
    / ``dst_format`` name them (``"varstore"``, ``"safetensors"``, ``"npz"``,
    ``"torch"``). ``dst`` is written atomically (a temporary file renamed into
    place, fsynced unless ``fsync=False``); an existing ``dst`` is replaced only
    with ``overwrite=True``. ``progress``: None shows a bar on a terminal for a
    conversion that takes over 2 seconds, False never, True always.

    Errors (all ``varstore.errors``): NotFoundError for a missing source or
    destination directory; InvalidArgumentError for an unknown format, a pickle
    payload (refused, never loaded), a dtype the destination cannot hold, or a
    bad name map; DataLossError for a corrupt source.
    """
    t0 = time.perf_counter()
    src_s, dst_s = os.fsdecode(os.fspath(src)), os.fsdecode(os.fspath(dst))
    if not os.path.exists(src_s):
        raise NotFoundError(f"convert: {src_s}: no such file")
    if os.path.isdir(src_s):  # a Saver's directory: its latest checkpoint
        from ..train.checkpoint_state import latest_checkpoint
        latest = latest_checkpoint(src_s)
        if latest is None:
            raise NotFoundError(f"convert: {src_s} is a directory without a checkpoint state file; "
                                f"name a file")
        src_s = latest
    sfmt = _check_format(src_format, "convert") if src_format else detect_format(src_s)
    dfmt = _check_format(dst_format, "convert") if dst_format else detect_format(dst_s, for_writing=True)
    if os.path.exists(dst_s):
        if os.path.isdir(dst_s):
            raise InvalidArgumentError(f"convert: destination {dst_s} is a directory; name a file")
        if os.path.samefile(src_s, dst_s):
            raise InvalidArgumentError(f"convert: source and destination are the same file ({dst_s})")
        if not overwrite:
            raise InvalidArgumentError(f"convert: {dst_s} already exists (pass overwrite=True, or --force, "
                                       f"to replace it)")
    directory = os.path.dirname(os.path.abspath(dst_s))
    if not os.path.isdir(directory):
        raise NotFoundError(f"convert: cannot write {dst_s}: directory {directory} does not exist")
    with open_tensors(src_s, sfmt) as source:
        rename = _Renamer(name_map, [i.name for i in source.infos])
        plan: Plan = []
        dropped: list[str] = []
        seen: dict[str, str] = {}
        for info in source.infos:
            new = rename(info.name)
            if new is None:
                dropped.append(info.name)
                continue
            if new in seen:
                raise InvalidArgumentError(f"convert: tensors {seen[new]!r} and {info.name!r} would both be "
                                           f"named {new!r}")
            seen[new] = info.name
            plan.append((new, info))
        total = sum(i.nbytes for _, i in plan)
        extra = _carried_extra(source, sfmt, src_s)
        with Progress(total, f"convert {os.path.basename(src_s)}", enabled=progress) as bar:
            try:
                _WRITERS[dfmt](dst_s, source, plan, bar, fsync, extra)
            except OSError as e:
                if isinstance(e, FileNotFoundError):
                    raise NotFoundError(f"convert: cannot write {dst_s}: {e.strerror or e}") from None
                raise
    seconds = time.perf_counter() - t0
    log.info("converted %d tensors (%s) from %s (%s) to %s (%s) in %.2f s%s", len(plan), format_bytes(total),
             src_s, sfmt, dst_s, dfmt, seconds, f"; dropped {len(dropped)}" if dropped else "")
    return ConvertResult(src_s, dst_s, sfmt, dfmt, len(plan), total, seconds, dropped)


def _carried_extra(source: _Source, fmt: str, path: str) -> dict:
    """What a varstore destination keeps of the source's metadata (msgpack-native values only)."""
    extra: dict[str, Any] = {}
    if fmt == "varstore":
        extra.update({k: v for k, v in source.metadata.items() if k != "converted_from"})
    elif "safetensors_metadata" in source.metadata:
        extra["safetensors_metadata"] = source.metadata["safetensors_metadata"]
    extra["converted_from"] = {"format": fmt, "file": os.path.basename(path)}
    return extra


def _main_convert(args: Any) -> int:
    """``varstore convert`` (called by the command line)."""
    name_map: dict[str, str] = {}
    if args.map_file:
        name_map.update(read_name_map_file(args.map_file))
    if args.map:
        for k, v in parse_name_map(args.map).items():
            name_map[k] = v
    r = convert(args.src, args.dst, name_map or None, src_format=args.src_format, dst_format=args.dst_format,
                progress=False if args.no_progress else None, overwrite=args.force)
    msg = (f"{r.src} ({r.src_format}) -> {r.dst} ({r.dst_format}): {r.tensors} tensors, "
           f"{format_bytes(r.nbytes)} in {r.seconds:.2f} s")
    if r.dropped:
        msg += f"; dropped {len(r.dropped)}"
    sys.stdout.write(msg + "\n")
    return 0

