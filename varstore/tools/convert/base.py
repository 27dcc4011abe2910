"""What every format module shares: a tensor's description, the reading interface, and
the file object writers hand to libraries (numpy's zipfile, torch.save) so that their
bytes go through ``AtomicFile.write``, the checkpoint write path's fault-injection seam."""
from __future__ import annotations

import io
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.dtypes import as_dtype, bfloat16
from devices.errors import InvalidArgumentError

from ...checkpoint.store import AtomicFile
from ...progress import Progress

CHUNK = 64 << 20  # bytes per write (and per progress update) of a tensor's data


@dataclass
class TensorInfo:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    nbytes: int


class Source:
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

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def tensor_info(path: str, name: str, dtype: Any, shape: Any) -> TensorInfo:
    try:
        dt = as_dtype(dtype)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"{path}: tensor {name!r}: {e.message}") from None
    shape = tuple(int(s) for s in shape)
    return TensorInfo(name, dt, shape, math.prod(shape) * dt.itemsize)



def c_order(a: np.ndarray) -> np.ndarray:
    """``a`` in C order, copied only if needed (np.ascontiguousarray would turn a 0-d array into 1-d)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def le_bytes(a: np.ndarray) -> np.ndarray:
    """``a``'s C-order little-endian bytes as a flat uint8 array (a view when it already is)."""
    dt = a.dtype
    if dt.itemsize > 1 and dt != bfloat16 and (dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big")):
        a = a.astype(dt.newbyteorder("<"))
    return c_order(a).reshape(-1).view(np.uint8)



class OutWriter(io.RawIOBase):
    """A writable file object over an :class:`AtomicFile`: every byte goes through
    ``out.write`` (so through ``fileio.syscall``); counted into ``bar`` when given."""

    def __init__(self, out: AtomicFile, bar: Progress | None = None):
        self._out, self._bar = out, bar

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        self._out.write(view)
        if self._bar is not None:
            self._bar.update(view.nbytes)
        return view.nbytes


class SeekableOutWriter(OutWriter):
    """An :class:`OutWriter` that can seek, as ``zipfile`` needs to write local headers in place.
    Closing it leaves the AtomicFile's descriptor open."""

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._out.fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._out.fd, 0, os.SEEK_CUR)


Plan = list[tuple[str, TensorInfo]]  # (new name, source tensor), in write order
