"""bfloat16 through DLPack on the host, which numpy cannot do by itself.

numpy refuses to export ml_dtypes' bfloat16 (``BufferError``) and to import
DLPack's ``kDLBfloat`` (``RuntimeError``), so ``torch.from_dlpack`` of a
bfloat16 variable and ``v.assign(torch_bf16_tensor)`` would fail or copy.
bfloat16 and uint16 have the same size and layout, so both directions go
through a uint16 capsule whose dtype code is rewritten in place: the data is
never copied and the capsule's owner and deleter are untouched.

>>> import numpy as np
>>> from devices.dtypes import bfloat16
>>> a = np.array([1.0, -2.5], dtype=bfloat16)
>>> class Exporter:  # what a Variable does: hand out a kDLBfloat capsule
...     def __dlpack__(self, **kw): return bfloat16_capsule(a, **kw)
...     def __dlpack_device__(self): return (KDL_CPU, 0)
>>> b = from_dlpack_host(Exporter())  # and back: kDLBfloat -> numpy bfloat16, no copy
>>> b.dtype.name, b.tolist(), np.shares_memory(a, b)
('bfloat16', [1.0, -2.5], True)
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from ..dtypes import bfloat16

KDL_CPU = 1
KDL_CUDA_HOST = 3
_KDL_UINT = 1
_KDL_BFLOAT = 4


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):  # DLPack < 1.0, capsule name "dltensor"
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class _DLManagedTensorVersioned(ctypes.Structure):  # DLPack >= 1.0, capsule name "dltensor_versioned"
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64), ("dl_tensor", _DLTensor)]


_api = ctypes.pythonapi
_api.PyCapsule_GetName.restype = ctypes.c_char_p
_api.PyCapsule_GetName.argtypes = [ctypes.py_object]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _dtype_of(capsule: Any) -> _DLDataType:
    """The DLDataType inside an unconsumed DLPack capsule (a live view into it)."""
    name = _api.PyCapsule_GetName(capsule)
    if name not in (b"dltensor", b"dltensor_versioned"):
        raise BufferError(f"not an unconsumed DLPack capsule (name {name!r})")
    ptr = _api.PyCapsule_GetPointer(capsule, name)
    kind = _DLManagedTensorVersioned if name == b"dltensor_versioned" else _DLManagedTensor
    return kind.from_address(ptr).dl_tensor.dtype


def _retag(capsule: Any, src_code: int, dst_code: int) -> Any:
    dt = _dtype_of(capsule)
    if dt.code != src_code or dt.bits != 16 or dt.lanes != 1:
        raise BufferError(f"expected a 16-bit DLPack tensor of type code {src_code}, "
                          f"received code {dt.code} with {dt.bits} bits x {dt.lanes}")
    dt.code = dst_code
    return capsule


def bfloat16_capsule(array: np.ndarray, **kwargs: Any) -> Any:
    """A DLPack capsule of a host bfloat16 numpy array, typed ``kDLBfloat`` (no copy).

    ``kwargs`` are those of ``ndarray.__dlpack__`` (``stream``, ``max_version``, ...).
    """
    return _retag(array.view(np.uint16).__dlpack__(**kwargs), _KDL_UINT, _KDL_BFLOAT)


class _Exporter:
    """Gives ``np.from_dlpack`` a capsule it understands: kDLBfloat retagged as uint16."""

    def __init__(self, source: Any):
        self._source = source

    def __dlpack_device__(self) -> Any:
        return self._source.__dlpack_device__()

    def __dlpack__(self, **kwargs: Any) -> Any:
        src = self._source
        try:
            capsule = src.__dlpack__(**kwargs)
        except TypeError:  # an exporter that predates the keyword arguments
            capsule = src.__dlpack__()
        return _retag(capsule, _KDL_BFLOAT, _KDL_UINT)


def from_dlpack_host(value: Any) -> np.ndarray:
    """A numpy bfloat16 view of a host DLPack exporter holding bfloat16 (a torch tensor): no copy."""
    return np.from_dlpack(_Exporter(value)).view(bfloat16)
