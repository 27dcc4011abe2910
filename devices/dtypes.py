"""The one normaliser for dtypes: names, numpy dtypes, ml_dtypes' bfloat16.

Only plain numeric and bool dtypes are allowed: no object, string or
structured dtypes, so nothing that needs code (pickle) to rebuild.

>>> as_dtype("bfloat16").name
'bfloat16'
>>> as_dtype("float32") == as_dtype(np.float32)
True
"""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from .errors import InvalidArgumentError

bfloat16 = np.dtype(ml_dtypes.bfloat16)

# Canonical name -> numpy dtype. The names are what checkpoints store.
_BY_NAME: dict[str, np.dtype] = {
    n: np.dtype(n)
    for n in (
        "bool", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    )
}
_BY_NAME["bfloat16"] = bfloat16
# TF spellings a user of the guide may type.
_ALIASES = {"half": "float16", "float": "float32", "double": "float64", "bool_": "bool"}

DTYPE_NAMES = frozenset(_BY_NAME)


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
        dt = _BY_NAME.get(name)
    else:
        try:
            dt = np.dtype(value)
        except (TypeError, ValueError):  # ValueError: e.g. a field list naming a field twice
            dt = None
        if dt is not None:
            # Byte order and subclasses are irrelevant: everything is stored little-endian.
            dt = _BY_NAME.get(dt.name) if dt.kind != "V" or dt == bfloat16 else None
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
    return dtype.kind == "f" or dtype == bfloat16
