"""TF's ``DataType`` enum (``tensorflow/core/framework/types.proto``) and numpy dtypes.

Tensors of the dtypes in ``NUMPY`` are stored as their raw little-endian
elements, ``size = elements * itemsize``. ``DT_STRING`` (7) has its own layout
(``strings.py``). Quantized, resource, variant and sub-byte dtypes are named
here so that errors can say what a tensor is, but varstore does not read them.

>>> NUMPY[14].name, ENUM[NUMPY[1]], name(21)
('bfloat16', 1, 'DT_VARIANT')
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

DT_STRING = 7

# enum -> numpy dtype, for everything stored as raw elements.
NUMPY: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.float64), 3: np.dtype(np.int32), 4: np.dtype(np.uint8),
    5: np.dtype(np.int16), 6: np.dtype(np.int8), 8: np.dtype(np.complex64), 9: np.dtype(np.int64),
    10: np.dtype(np.bool_), 14: np.dtype(ml_dtypes.bfloat16), 17: np.dtype(np.uint16),
    18: np.dtype(np.complex128), 19: np.dtype(np.float16), 22: np.dtype(np.uint32), 23: np.dtype(np.uint64),
    24: np.dtype(ml_dtypes.float8_e5m2), 25: np.dtype(ml_dtypes.float8_e4m3fn),
}
ENUM: dict[np.dtype, int] = {dt: n for n, dt in NUMPY.items()}

_NAMES = {
    1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16", 6: "DT_INT8", 7: "DT_STRING",
    8: "DT_COMPLEX64", 9: "DT_INT64", 10: "DT_BOOL", 11: "DT_QINT8", 12: "DT_QUINT8", 13: "DT_QINT32",
    14: "DT_BFLOAT16", 15: "DT_QINT16", 16: "DT_QUINT16", 17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF",
    20: "DT_RESOURCE", 21: "DT_VARIANT", 22: "DT_UINT32", 23: "DT_UINT64", 24: "DT_FLOAT8_E5M2",
    25: "DT_FLOAT8_E4M3FN", 26: "DT_FLOAT8_E4M3FNUZ", 27: "DT_FLOAT8_E4M3B11FNUZ", 28: "DT_FLOAT8_E5M2FNUZ",
    29: "DT_INT4", 30: "DT_UINT4", 31: "DT_INT2", 32: "DT_UINT2", 33: "DT_FLOAT4_E2M1FN",
}
KNOWN = frozenset(_NAMES)


def name(enum: int) -> str:
    """TF's name of a DataType value (``DT_FLOAT``), or ``DataType(n)`` for an unknown one."""
    return _NAMES.get(enum, f"DataType({enum})")


def readable(enum: int) -> bool:
    """varstore reads tensors of this dtype (raw elements or strings)."""
    return enum in NUMPY or enum == DT_STRING


__all__ = ["NUMPY", "ENUM", "DT_STRING", "KNOWN", "name", "readable"]
