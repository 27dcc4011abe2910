"""Copies between places: to the host, and chunked gathers with bounded staging memory.

>>> import numpy as np
>>> to_host(np.arange(3)).tolist()
[0, 1, 2]
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .backends.arrays import cupy_module, host_array
from .backends.base import DEFAULT_CHUNK_BYTES, Device
from .errors import InvalidArgumentError


def device_of(array: Any) -> Device:
    """The local Device holding ``array`` (the CPU for anything that is not a cupy array)."""
    from .manager import get_device
    cp = cupy_module()
    if cp is not None and isinstance(array, cp.ndarray):
        return get_device(f"/device:GPU:{array.device.id}")
    return get_device("/device:CPU:0")


def to_host(array: Any, out: np.ndarray | None = None) -> np.ndarray:
    """A numpy array with ``array``'s values (no copy for a numpy array and no ``out``).

    ``out``, when given, must have the same shape and dtype and is filled in place.
    """
    cp = cupy_module()
    if cp is not None and isinstance(array, cp.ndarray):
        if out is not None:
            _check_out(out, tuple(array.shape), array.dtype)
        return device_of(array).to_host(array, out)
    src = host_array(array)
    if out is None:
        return src
    # Compare the numpy dtype of the converted value: a torch tensor's .dtype is torch.float32,
    # never equal to a numpy dtype. Values without a dtype (lists, scalars) may be cast.
    _check_out(out, src.shape, src.dtype if hasattr(array, "dtype") else None)
    try:
        np.copyto(out, src, casting="same_kind")
    except TypeError as e:
        raise InvalidArgumentError(f"to_host: cannot write {src.dtype} values into out of dtype {out.dtype}: {e}") from None
    return out


def _check_out(out: Any, shape: tuple, dtype: Any) -> None:
    if not isinstance(out, np.ndarray):
        raise InvalidArgumentError(f"to_host: out must be a numpy array, received {type(out).__name__}")
    if out.shape != shape or (dtype is not None and out.dtype != dtype):
        raise InvalidArgumentError(
            f"to_host: out has shape {out.shape} dtype {out.dtype}, "
            f"expected shape {shape} dtype {dtype if dtype is not None else '?'}")


def host_chunks(array: Any, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[memoryview]:
    """Yield ``array``'s raw C-order bytes as host memoryviews of at most ``chunk_bytes``.

    Host arrays are yielded as views (no copy). GPU arrays go through two
    reused pinned staging buffers, the next chunk copying while the caller
    consumes the current one: extra host memory is 2 × chunk_bytes whatever
    the array's size. Each view is valid until the next is requested.
    """
    if chunk_bytes <= 0:
        raise InvalidArgumentError(f"host_chunks: chunk_bytes must be positive, received {chunk_bytes}")
    return device_of(array).host_chunks(array, chunk_bytes)


def gather(array: Any, out: Any, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Any:
    """Copy ``array``'s bytes into the caller's writable host buffer ``out`` in chunks."""
    dst = memoryview(out).cast("B")
    nbytes = int(getattr(array, "nbytes", 0))
    if dst.nbytes != nbytes:
        raise InvalidArgumentError(f"gather: out holds {dst.nbytes} bytes, the array has {nbytes}")
    pos = 0
    for chunk in host_chunks(array, chunk_bytes):
        dst[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    return out
