"""safetensors: read by parsing its header and mapping the file (no copy, no
dependency); written by streaming, with ``__metadata__`` carried over."""
from __future__ import annotations

import json
import mmap
import os
import struct
from typing import Any

import numpy as np

from devices.dtypes import bfloat16
from devices.errors import DataLossError, InvalidArgumentError

from ...checkpoint.store import AtomicFile
from ...progress import Progress
from .base import CHUNK, Plan, Source, le_bytes, tensor_info

# safetensors dtype names <-> ours (little-endian throughout).
_ST_TO_NAME = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "F16": "float16",
               "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32", "F64": "float64",
               "I64": "int64", "U64": "uint64", "C64": "complex64"}
_NAME_TO_ST = {v: k for k, v in _ST_TO_NAME.items()}
MAX_HEADER = 100_000_000  # the safetensors library's own bound


class SafetensorsSource(Source):
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
        if n > MAX_HEADER or 8 + n > size:
            raise self._bad(f"header of {n} bytes does not fit (file of {size} bytes, at most {MAX_HEADER})")
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
            info = tensor_info(self.path, name, _ST_TO_NAME[st], shape)
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


def write_safetensors(dst: str, src: Source, plan: Plan, bar: Progress, fsync: bool, extra: dict) -> None:
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
    with AtomicFile(dst, fsync, what="safetensors file") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for _new, info in plan:
            flat = le_bytes(np.asarray(src.array(info.name)))
            if flat.nbytes != info.nbytes:
                raise DataLossError(f"{src.path}: tensor {info.name!r} yielded {flat.nbytes} bytes, "
                                    f"expected {info.nbytes}")
            view = memoryview(flat)  # type: ignore[arg-type]  # numpy arrays are buffers
            for start in range(0, flat.nbytes, CHUNK):
                part = view[start:start + CHUNK]
                out.write(part)
                bar.update(part.nbytes)
