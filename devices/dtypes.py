"""The one normaliser for dtypes: names, numpy dtypes, ml_dtypes' bfloat16.

Only plain numeric and bool dtypes are allowed: no object, string or
structured dtypes, so nothing that needs code (pickle) to rebuild.

>>> as_dtype("bfloat16").name
'bfloat16'
>>> as_dtype("float32") == as_dtype(np.float32)
True
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidArgumentError

# Canonical name -> numpy dtype. The names are what checkpoints store. bfloat16 joins on first
# use (_bfloat16): ml_dtypes' extension takes 0.5-1 s to import with numpy 2.x, more than all
# the rest of `import varstore`, and most programs never touch a bfloat16.
_BY_NAME: dict[str, np.dtype] = {
    n: np.dtype(n)
    for n in (
        "bool", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    )
}


@functools.cache
def _bfloat16() -> np.dtype:
    import ml_dtypes

    dt = np.dtype(ml_dtypes.bfloat16)
    _BY_NAME["bfloat16"] = dt
    return dt


if TYPE_CHECKING:
    bfloat16: np.dtype  # ml_dtypes' bfloat16 as a numpy dtype
else:
    def __getattr__(name: str) -> Any:
        # `devices.dtypes.bfloat16` (and `from devices.dtypes import bfloat16`) load ml_dtypes
        # here, on first use. Hidden from type checkers, so a misspelled name stays an error.
        if name == "bfloat16":
            return _bfloat16()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_bfloat16(dtype: Any) -> bool:
    """True for ml_dtypes' bfloat16 (a numpy dtype, or its scalar type), without importing
    ml_dtypes for any other dtype.

    An array can only have that dtype once ml_dtypes is loaded, so the name is
    checked first and the (loading) comparison only made for a candidate.

    >>> is_bfloat16(np.dtype("float32")), is_bfloat16(as_dtype("bfloat16"))
    (False, True)
    """
    if "bfloat16" not in (getattr(dtype, "name", None), getattr(dtype, "__name__", None)):
        return False
    try:
        return np.dtype(dtype) == _bfloat16()
    except (TypeError, ValueError):  # something else that calls itself bfloat16 (torch's is no numpy dtype)
        return False


# TF spellings a user of the guide may type.
_ALIASES = {"half": "float16", "float": "float32", "double": "float64", "bool_": "bool"}

DTYPE_NAMES = frozenset(_BY_NAME) | {"bfloat16"}


def as_dtype(value: Any) -> np.dtype:
    """Return the numpy dtype for ``value`` (a name, numpy dtype or scalar type).

    Raises InvalidArgumentError for anything outside the supported set.

    >>> as_dtype("float")
    dtype('float32')
    """
    if value is None:
        raise InvalidArgumentError("dtype: expected a dtype name such as 'float32', received None")
    name = getattr(value, "name", None) if not isinstance(value, str) else value
    if isinstance(value, str):
        name = _ALIASES.get(value, value)
        dt = _bfloat16() if name == "bfloat16" else _BY_NAME.get(name)
    else:
        try:
            dt = np.dtype(value)
        except (TypeError, ValueError):  # ValueError: e.g. a field list naming a field twice
            dt = None
        if dt is not None:
            # Byte order and subclasses are irrelevant: everything is stored little-endian.
            dt = _BY_NAME.get(dt.name) if dt.kind != "V" or is_bfloat16(dt) else None
    if dt is None:
        raise InvalidArgumentError(
            f"dtype: expected one of {sorted(DTYPE_NAMES)}, received {value!r}"
            + (f" ({name})" if name and name != value else "")
        )
    return dt


def dtype_name(dtype: Any) -> str:
    """Canonical name of a supported dtype (``as_dtype(dtype).name``)."""
    return as_dtype(dtype).name


def is_floating(dtype: np.dtype) -> bool:
    """True for float16/bfloat16/float32/float64."""
    return dtype.kind == "f" or is_bfloat16(dtype)
