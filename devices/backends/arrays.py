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

from .. import dtypes as _dtypes  # bfloat16 by attribute: ml_dtypes loads only when used
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
    if cuda_array_interface(value) is not None:  # only reached when the value is a GPU array
        cp = cupy_module()
        if cp is None:
            raise InvalidArgumentError(f"{type(value).__name__} lives on a GPU; copying it to the host needs cupy")
        return cp.asnumpy(device_array(cp, value))
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


def cuda_array_interface(value: Any) -> dict | None:
    """``value.__cuda_array_interface__``, or None where it has none.

    Not ``hasattr``: torch raises RuntimeError (not AttributeError) for a CUDA tensor that
    requires grad, and AttributeError for a CPU tensor; neither must escape a type probe.
    """
    try:
        return value.__cuda_array_interface__
    except Exception:  # noqa: BLE001 - any failure means "not a GPU array we can read this way"
        return None


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


# -- GPU values, for any backend (cupy only when installed) -------------------------------------
def check_gpu_dtype(cp: Any, dtype: Any) -> None:
    """InvalidArgumentError for a dtype this cupy cannot hold (bfloat16: cupy >= 14 with
    numpy >= 2.1.2; issue 15, bug 4)."""
    if _dtypes.is_bfloat16(dtype) and not bfloat16_supported(cp):
        raise InvalidArgumentError(
            f"bfloat16 on the GPU needs cupy >= 14 and numpy >= 2.1.2; this is cupy "
            f"{getattr(cp, '__version__', '?')} with numpy {np.__version__}")


def bfloat16_supported(cp: Any) -> bool:
    """Whether ``cp`` (the cupy module) creates bfloat16 arrays with this numpy."""
    return _major(getattr(cp, "__version__", "0")) >= 14 and _version(np.__version__) >= (2, 1, 2)


def _major(v: str) -> int:
    head = v.split(".")[0]
    return int(head) if head.isdigit() else 0


def _version(v: str) -> tuple:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def device_array(cp: Any, value: Any) -> Any:
    """``value`` as a cupy array when it lives on a GPU (cupy, torch CUDA, anything with
    ``__cuda_array_interface__`` or CUDA DLPack), else None."""
    if isinstance(value, cp.ndarray):
        return value
    if getattr(value, "requires_grad", False) and hasattr(value, "detach"):
        # torch refuses __cuda_array_interface__ (RuntimeError, which hasattr does not catch) and
        # numpy() on such a tensor; as on the CPU path, say what to do rather than detach silently.
        raise InvalidArgumentError(f"cannot make an array of a {type(value).__name__} that requires grad: "
                                   f"pass tensor.detach()")
    cai = cuda_array_interface(value)
    if cai is not None:
        bf16 = "bfloat16" in str(getattr(value, "dtype", ""))
        if bf16 and hasattr(value, "__dlpack__") and bfloat16_supported(cp):
            return cp.from_dlpack(value)  # cupy 14 imports kDLBfloat: a bfloat16 view
        src = cp.asarray(value)
        if bf16 and src.dtype.kind == "V" and src.dtype.itemsize == 2:
            # torch exports bfloat16 over __cuda_array_interface__ as "<V2": the bytes are right,
            # the dtype is not.
            check_gpu_dtype(cp, _dtypes.bfloat16)
            src = src.view(_dtypes.bfloat16)
        return src
    if hasattr(value, "__dlpack__") and not hasattr(value, "__array__"):
        return cp.from_dlpack(value)
    return None
