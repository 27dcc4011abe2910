"""Array helpers every backend shares: any value as numpy, and cupy when it is installed.

Neutral ground below the backends: cpu, gpu and ps import from here, never from each
other. cupy is imported on first use only (CPU-only users never pay for it).

>>> host_array([1, 2]).tolist()
[1, 2]
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError


@functools.cache
def cupy_module() -> Any:
    """The cupy module, or None when it is not installed or cannot load."""
    try:
        import cupy  # noqa: PLC0415 - lazy on purpose: CPU-only users never pay for it
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    return cupy


def host_array(value: Any) -> np.ndarray:
    """Any host-reachable value as numpy, without a copy where possible.

    Accepts numpy, cupy (copied to host), anything with ``__array__`` or a
    CPU ``__dlpack__``, Python scalars and nested lists.
    """
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__cuda_array_interface__"):  # only reached when the value is a GPU array
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
