"""Host memory through numpy, in 64-byte aligned buffers (cache lines, AVX-512, mmap-friendly).

``host_array`` lives in :mod:`devices.backends.arrays`; the name stays here for old imports.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..dtypes import as_dtype
from ..errors import ResourceExhaustedError
from ..shapes import as_shape, num_elements
from .arrays import host_array
from .base import DEFAULT_CHUNK_BYTES, Device

ALIGNMENT = 64


def aligned_empty(shape: Any, dtype: Any) -> np.ndarray:
    """An uninitialized C-order numpy array whose data starts on a 64-byte boundary.

    >>> aligned_empty((3, 5), "float32").ctypes.data % 64
    0
    """
    shape, dtype = as_shape(shape), as_dtype(dtype)
    nbytes = num_elements(shape) * dtype.itemsize
    try:
        raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    except (MemoryError, ValueError):  # ValueError: beyond numpy's maximum dimension
        raise ResourceExhaustedError(
            f"cannot allocate {nbytes} bytes for shape {shape} {dtype.name} on the CPU") from None
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class CpuDevice(Device):
    """The local CPU: numpy arrays."""

    kind = "cpu"

    @property
    def xp(self):
        return np

    def empty(self, shape, dtype):
        a = aligned_empty(shape, dtype)
        self._track(a.base if a.base is not None else a, a.nbytes)
        return a

    def asarray(self, value, dtype=None, copy=False):
        src = host_array(value)
        # Validate the source dtype too: strings and objects are not array dtypes here (the GPU
        # backend refuses them the same way), and a byte-swapped source becomes native order.
        dt = as_dtype(src.dtype if dtype is None else dtype)
        if not copy and src.dtype == dt and src.flags.c_contiguous:
            return src
        out = self.empty(src.shape, dt)
        np.copyto(out, src, casting="unsafe")
        return out

    def to_host(self, array, out=None):
        src = host_array(array)
        if out is None:
            return src
        np.copyto(out, src)
        return out

    def holds(self, array):
        return isinstance(array, np.ndarray)

    def host_chunks(self, array, chunk_bytes=DEFAULT_CHUNK_BYTES) -> Iterator[memoryview]:
        # Host data is already where the writer needs it: hand out views, copy nothing.
        flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        for start in range(0, flat.nbytes, chunk_bytes):
            yield memoryview(flat[start:start + chunk_bytes])

    def rng(self, seed):
        return np.random.default_rng(seed)
