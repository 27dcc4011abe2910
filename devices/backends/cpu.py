"""Host memory through numpy, in 64-byte aligned buffers (cache lines, AVX-512, mmap-friendly)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..dtypes import as_dtype
from ..errors import InvalidArgumentError, ResourceExhaustedError
from ..shapes import as_shape, num_elements
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


def host_array(value: Any) -> np.ndarray:
    """Any host-reachable value as numpy, without a copy where possible.

    Accepts numpy, cupy (copied to host), anything with ``__array__`` or a
    CPU ``__dlpack__``, Python scalars and nested lists.
    """
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__cuda_array_interface__"):
        from .gpu import cupy_module  # only reached when the value is a GPU array
        return cupy_module().asnumpy(value)
    if hasattr(value, "__dlpack__") and not hasattr(value, "__array__"):
        return _from_dlpack(value)
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as e:  # ragged lists, types numpy cannot convert
        if hasattr(value, "__dlpack__"):
            # A torch bfloat16 tensor: its __array__ fails (numpy has no bfloat16), DLPack works.
            try:
                return _from_dlpack(value)
            except Exception:  # noqa: BLE001 - report the first, clearer error below
                pass
        raise InvalidArgumentError(f"cannot make an array of {type(value).__name__}: {e}") from None


def _from_dlpack(value: Any) -> np.ndarray:
    """A host DLPack exporter as numpy without a copy, bfloat16 included."""
    try:
        return np.from_dlpack(value)
    except (BufferError, RuntimeError, TypeError, ValueError) as e:
        if "bfloat16" not in str(getattr(value, "dtype", "")):
            raise InvalidArgumentError(f"cannot make an array of {type(value).__name__} "
                                       f"through DLPack: {e}") from None
    from .dlpack import from_dlpack_host
    try:
        return from_dlpack_host(value)
    except (BufferError, RuntimeError, TypeError, ValueError) as e:
        raise InvalidArgumentError(f"cannot make an array of {type(value).__name__} "
                                   f"through DLPack: {e}") from None


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
