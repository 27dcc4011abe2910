"""fakecupy: a numpy-backed stand-in for the slice of cupy that varstore's GPU code paths,
``tests/gpu/test_gpu_paths.py`` and ``benchmarks/gpu.py`` use.

It exists for ``scripts/gpu-check --dry-run`` and the CPU tests of the GPU paths: with
``tests/fakecupy`` on ``PYTHONPATH``, ``import cupy`` gives this module, ``devices`` sees one "GPU", and the
GPU tests and the benchmark run their Python end to end on a CPU machine, so a typo,
a wrong fixture or a wrong cupy call is found before a card is lent. It proves nothing
about CUDA: copies are synchronous ``memmove``s, events are wall-clock stamps, random
numbers come from numpy's generator (not cuRAND), and compiled kernels
(``ElementwiseKernel``, ``RawKernel``) cannot run.

It is deliberately strict where real cupy is strict, so mistakes fail here as they would
on a card (issue 15):
- host/device mix-ups: ``numpy.asarray(device_array)`` raises TypeError (cupy forbids
  implicit device-to-host conversion), and mixing a numpy array (ndim > 0) into a device
  operation or a ``__setitem__`` raises TypeError;
- devices (``FAKECUPY_DEVICES``, default 1): arrays and random generators belong to the
  device current when they were made; an operation on an array of another device than the
  current one raises (as cupy does without peer access), except ``copyto`` of contiguous
  same-dtype arrays (a peer copy); a generator used with another device current raises;
- names: only the names real cupy 14.2 has (``_names.py``) are forwarded to numpy;
- bfloat16 (ml_dtypes) as cupy ``FAKECUPY_VERSION`` (default 14) does with the installed
  numpy: 14 needs numpy >= 2.1.2, 13 has none; cupy 13 cannot export it over DLPack;
- streams: a copy issued on a stream other than the legacy default stream (an explicit
  stream, or every thread's own stream under ``CUPY_CUDA_PER_THREAD_DEFAULT_STREAM=1``)
  stays pending until that stream is synchronized, an event recorded after it is
  synchronized or waited for, or another operation runs on that same stream. A reader on
  another stream that skipped the sync sees the old bytes, as on a card.

Never install this; never put it on ``PYTHONPATH`` outside the dry run and the tests.
"""
from __future__ import annotations

import ctypes
import sys
import threading
import time
import types
import weakref
from typing import Any

import numpy as _np

__fakecupy__ = True

# dtypes and scalar types, as in cupy (they are numpy's)
from numpy import (bool_, complex64, complex128, dtype, float16, float32, float64, int8, int16,  # noqa: E402,F401
                   int32, int64, uint8, uint16, uint32, uint64, newaxis, nan, inf, pi, e)

from ._names import CUPY_NAMES  # noqa: E402

_POOL_ROUND = 512  # cupy's memory pool rounds allocations up to 512 bytes
_VERSION = int(__import__("os").environ.get("FAKECUPY_VERSION", "14"))  # the cupy major to mimic
__version__ = {13: "13.6.0", 14: "14.2.0"}.get(_VERSION, f"{_VERSION}.0.0") + "+fakecupy"
_tls = threading.local()


def _current_device() -> int:
    return getattr(_tls, "device", 0)


def _on_current_device(values: Any, what: str) -> None:
    """cupy without peer access: every array operand must be on the current device."""
    cur = _current_device()
    for x in values:
        items = x if isinstance(x, (list, tuple)) else (x,)
        for a in items:
            if isinstance(a, ndarray) and a._dev != cur:
                raise ValueError(f"{what}: the device where the array resides ({a._dev}) is different from the "
                                 f"current device ({cur}). Peer access is unavailable between these devices. "
                                 f"(fakecupy)")


def _is_bf16(dt: Any) -> bool:
    return getattr(dt, "name", "") == "bfloat16"


def _numpy_version() -> tuple:
    return tuple(int(x) for x in _np.__version__.split(".")[:3] if x.isdigit())


def _check_dtype(dt: Any) -> None:
    """bfloat16 as real cupy: none on 13; on 14 only with numpy >= 2.1.2."""
    if _is_bf16(dt):
        if _VERSION < 14:
            raise TypeError("Unsupported dtype bfloat16 (cupy 13 has no bfloat16; fakecupy)")
        if _numpy_version() < (2, 1, 2):
            raise TypeError(f"cupy 14 supports bfloat16 with numpy >= 2.1.2, not {_np.__version__} (fakecupy)")


def is_available() -> bool:
    return True


# -- the memory pool ------------------------------------------------------------------------------
class MemoryPool:
    """Counts the bytes of live device arrays, rounded as cupy's pool rounds them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used = 0
        self._total = 0
        self._limit = 0

    def _alloc(self, owner: "ndarray", nbytes: int) -> None:
        n = -(-max(nbytes, 0) // _POOL_ROUND) * _POOL_ROUND
        if n == 0:
            return
        with self._lock:
            self._used += n
            self._total = max(self._total, self._used)
        weakref.finalize(owner, self._free, n)

    def _free(self, n: int) -> None:
        with self._lock:
            self._used -= n

    def used_bytes(self) -> int:
        return self._used

    def total_bytes(self) -> int:
        return self._total

    def free_bytes(self) -> int:
        return self._total - self._used

    def free_all_blocks(self, stream: Any = None) -> None:
        with self._lock:
            self._total = self._used

    def n_free_blocks(self) -> int:
        return 0

    def set_limit(self, size: Any = None, fraction: Any = None) -> None:
        self._limit = int(size or 0)

    def get_limit(self) -> int:
        return self._limit


class PinnedMemoryPool:
    def free_all_blocks(self) -> None:
        pass

    def n_free_blocks(self) -> int:
        return 0


_pool = MemoryPool()
_pinned_pool = PinnedMemoryPool()


def get_default_memory_pool() -> MemoryPool:
    return _pool


def get_default_pinned_memory_pool() -> PinnedMemoryPool:
    return _pinned_pool


# -- wrapping -------------------------------------------------------------------------------------
def _reject_host(x: Any, what: str) -> None:
    if isinstance(x, _np.ndarray) and x.ndim > 0:
        raise TypeError(f"Unsupported type {type(x)} in {what} (fakecupy mimics cupy: move host arrays "
                        f"to the device with cupy.asarray first)")


def unwrap(x: Any) -> Any:
    """The numpy array behind a fake device array (lists, tuples and dicts recursively).

    Public for the dry run's stand-in kernels; real cupy has no such thing.
    """
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, (list, tuple)):
        return type(x)(unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: unwrap(v) for k, v in x.items()}
    return x


def _check_args(args: Any, kwargs: dict, what: str) -> None:
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, (list, tuple)):
            for b in a:
                _reject_host(b, what)
        else:
            _reject_host(a, what)


def _new(a: _np.ndarray) -> "ndarray":
    """A new device allocation holding ``a`` (counted by the pool), on the current device."""
    _check_dtype(a.dtype)
    out = ndarray.__new__(ndarray)
    out._a = a
    out._base = None
    out._owner = None
    out._dev = _current_device()
    _pool._alloc(out, a.nbytes)
    return out


def _wrap(res: Any, parents: tuple = ()) -> Any:
    """Results of numpy calls as fake device arrays; views keep their base alive (as cupy's do)."""
    if isinstance(res, tuple):
        return tuple(_wrap(r, parents) for r in res)
    if isinstance(res, list):
        return [_wrap(r, parents) for r in res]
    if isinstance(res, _np.generic):
        return _new(_np.asarray(res))  # cupy returns 0-d arrays, not scalars
    if not isinstance(res, _np.ndarray):
        return res
    for p in parents:
        if isinstance(p, ndarray) and res is p._a:
            return p
    if res.base is not None:
        for p in parents:
            if isinstance(p, ndarray) and _np.shares_memory(res, p._a):
                _check_dtype(res.dtype)
                out = ndarray.__new__(ndarray)
                out._a = res
                out._base = p._root()
                out._owner = None
                out._dev = p._dev
                return out
    return _new(res)


def _call(fn: Any, args: tuple, kwargs: dict, what: str) -> Any:
    _check_args(args, kwargs, what)
    _on_current_device(list(args) + list(kwargs.values()), what)
    _flush_current()
    parents = tuple(a for a in args if isinstance(a, ndarray)) + tuple(
        v for v in kwargs.values() if isinstance(v, ndarray))
    return _wrap(fn(*unwrap(args), **unwrap(kwargs)), parents)


class _DataPointer:
    __slots__ = ("ptr", "mem")

    def __init__(self, ptr: int, mem: Any):
        self.ptr, self.mem = ptr, mem


class ndarray:
    """A fake device array: a numpy array that refuses implicit conversion to numpy."""

    __slots__ = ("_a", "_base", "_owner", "_dev", "__weakref__")
    __array_priority__ = 1000

    def __init__(self, shape: Any, dtype: Any = float, memptr: Any = None, strides: Any = None, order: str = "C"):
        _check_dtype(_np.dtype(dtype))
        self._a = _np.empty(shape, dtype, order=order)
        self._base = None
        self._owner = None
        self._dev = _current_device()
        _pool._alloc(self, self._a.nbytes)

    def _root(self) -> "ndarray":
        r = self
        while r._base is not None:
            r = r._base
        return r

    # attributes ---------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    base = property(lambda self: self._base)

    @property
    def T(self) -> "ndarray":
        return _wrap(self._a.T, (self,))

    @property
    def data(self) -> _DataPointer:
        return _DataPointer(self._a.ctypes.data, self._root())

    @property
    def device(self) -> "Device":
        return Device(self._dev)

    @property
    def __cuda_array_interface__(self) -> dict:
        _flush_current()
        return {"shape": self._a.shape, "typestr": self._a.dtype.str, "version": 3,
                "data": (self._a.ctypes.data, not self._a.flags.writeable),
                "strides": None if self._a.flags.c_contiguous else self._a.strides, "stream": 1}

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        if _is_bf16(self._a.dtype):
            if _VERSION < 14:
                raise TypeError("cupy 13 cannot export bfloat16 through DLPack (fakecupy)")
            from devices.backends.dlpack import bfloat16_capsule  # cupy 14 exports kDLBfloat
            return bfloat16_capsule(self._a, **kwargs)
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self) -> tuple:
        return self._a.__dlpack_device__()

    # conversion -----------------------------------------------------------------
    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
                        "construct a NumPy array explicitly. (fakecupy)")

    def get(self, stream: Any = None, order: str = "C", out: Any = None, blocking: bool = True) -> _np.ndarray:
        (stream or get_current_stream())._flush()  # a D2H copy on that stream, then a sync of it
        if out is not None:
            _np.copyto(out, self._a)
            return out
        return _np.array(self._a, order=order)

    def set(self, arr: Any, stream: Any = None) -> None:
        if not isinstance(arr, _np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, received {type(arr)}")
        if arr.dtype != self._a.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self._a.dtype} array")
        if arr.shape != self._a.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self._a.shape}, new shape: {arr.shape}")
        _flush_current()
        _np.copyto(self._a, arr)

    def item(self) -> Any:
        return self._a.item()

    def tolist(self) -> Any:
        return self._a.tolist()

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __index__(self) -> int:
        return self._a.__index__()

    def __bool__(self) -> bool:
        return bool(self._a)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    def __repr__(self) -> str:
        return "fakecupy." + repr(self._a)

    __str__ = __repr__

    # shape and dtype -----------------------------------------------------------
    def reshape(self, *shape: Any, order: str = "C") -> "ndarray":
        return _wrap(self._a.reshape(*shape, order=order), (self,))

    def view(self, dtype: Any = None) -> "ndarray":
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype), (self,))

    def astype(self, dtype: Any, order: str = "K", casting: Any = None, subok: Any = None,
               copy: bool = True) -> "ndarray":
        if not copy and self._a.dtype == _np.dtype(dtype):
            return self
        _on_current_device([self], "astype")
        _flush_current()
        return _new(self._a.astype(dtype, order=order))

    def copy(self, order: str = "C") -> "ndarray":
        _on_current_device([self], "copy")
        _flush_current()
        return _new(self._a.copy(order=order))

    def fill(self, value: Any) -> None:
        _on_current_device([self], "fill")
        _flush_current()
        self._a.fill(value)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._a, name)  # sum, mean, max, ravel, flatten, any, all, ...
        if not callable(attr):
            return attr

        def method(*args: Any, **kwargs: Any) -> Any:
            return _call(attr, args, kwargs, f"ndarray.{name}")
        return method

    # indexing ---------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        _on_current_device([self, key], "__getitem__")
        _flush_current()
        return _wrap(self._a[unwrap(key)], (self,))

    def __setitem__(self, key: Any, value: Any) -> None:
        _reject_host(value, "__setitem__")
        _on_current_device([self, key, value], "__setitem__")
        dst, k, v = self._a, unwrap(key), unwrap(value)
        keep = (self, key, value)  # the arrays (and memory they borrow) live until the copy runs

        def run() -> None:
            dst[k] = v
            _ = keep
        get_current_stream()._enqueue(run)

    # numpy protocols ---------------------------------------------------------------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        fn = getattr(ufunc, method)
        return _call(fn, inputs, kwargs, f"{ufunc.__name__}")

    def __array_function__(self, func: Any, types_: Any, args: tuple, kwargs: dict) -> Any:
        return _call(func, args, kwargs, func.__name__)

    __hash__ = None  # type: ignore[assignment]


def _binop(ufunc: Any, reflected: bool = False, inplace: bool = False):
    def op(self, other):
        _reject_host(other, ufunc.__name__)
        _on_current_device([self, other], ufunc.__name__)
        _flush_current()
        if inplace:
            ufunc(self._a, unwrap(other), out=self._a)
            return self
        a, b = (unwrap(other), self._a) if reflected else (self._a, unwrap(other))
        return _wrap(ufunc(a, b), (self,))
    return op


for _name, _uf in [("add", _np.add), ("sub", _np.subtract), ("mul", _np.multiply), ("truediv", _np.true_divide),
                   ("floordiv", _np.floor_divide), ("mod", _np.remainder), ("pow", _np.power),
                   ("matmul", _np.matmul), ("and", _np.bitwise_and), ("or", _np.bitwise_or),
                   ("xor", _np.bitwise_xor), ("lshift", _np.left_shift), ("rshift", _np.right_shift)]:
    setattr(ndarray, f"__{_name}__", _binop(_uf))
    setattr(ndarray, f"__r{_name}__", _binop(_uf, reflected=True))
    setattr(ndarray, f"__i{_name}__", _binop(_uf, inplace=True))
for _name, _uf in [("lt", _np.less), ("le", _np.less_equal), ("gt", _np.greater), ("ge", _np.greater_equal),
                   ("eq", _np.equal), ("ne", _np.not_equal)]:
    setattr(ndarray, f"__{_name}__", _binop(_uf))
ndarray.__neg__ = lambda self: _wrap(-self._a, (self,))  # type: ignore[attr-defined]
ndarray.__pos__ = lambda self: _wrap(+self._a, (self,))  # type: ignore[attr-defined]
ndarray.__abs__ = lambda self: _wrap(abs(self._a), (self,))  # type: ignore[attr-defined]
ndarray.__invert__ = lambda self: _wrap(~self._a, (self,))  # type: ignore[attr-defined]


# -- array creation and transfer ------------------------------------------------------------------
def _from_cai(obj: Any) -> ndarray:
    """A zero-copy view of memory described by __cuda_array_interface__ (here: host memory)."""
    cai = obj.__cuda_array_interface__
    dt = _np.dtype(cai["typestr"])
    shape = tuple(cai["shape"])
    ptr = cai["data"][0]
    n = int(_np.prod(shape, dtype=_np.int64)) * dt.itemsize
    strides = cai.get("strides")
    if strides is not None:
        raise NotImplementedError("fakecupy: strided __cuda_array_interface__")
    buf = (ctypes.c_char * max(n, 1)).from_address(ptr) if n else bytearray(1)
    a = _np.frombuffer(buf, dtype=_np.uint8, count=n).view(dt).reshape(shape)
    out = ndarray.__new__(ndarray)
    out._a, out._base, out._owner = a, None, obj  # foreign memory: not counted by our pool
    out._dev = _current_device()
    return out


def asarray(a: Any, dtype: Any = None, order: Any = None, *, blocking: bool = False) -> ndarray:
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == _np.dtype(dtype) else a.astype(dtype)
    if hasattr(a, "__cuda_array_interface__"):
        out = _from_cai(a)
        return out if dtype is None or out.dtype == _np.dtype(dtype) else out.astype(dtype)
    return _new(_np.array(a, dtype=dtype, order=order or "K", copy=True))  # host -> device: a copy


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", subok: bool = False,
          ndmin: int = 0, *, blocking: bool = False) -> ndarray:
    out = asarray(obj, dtype)
    if copy and (out is obj or isinstance(obj, ndarray) or hasattr(obj, "__cuda_array_interface__")):
        out = out.copy()
    return out


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None, *, blocking: bool = True) -> _np.ndarray:
    if isinstance(a, ndarray):
        return a.get(out=out)
    if hasattr(a, "__cuda_array_interface__"):
        return _from_cai(a).get(out=out)
    res = _np.asarray(a, order=order)
    if out is not None:
        _np.copyto(out, res)
        return out
    return res


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    a = asarray(a)
    if a.flags.c_contiguous and (dtype is None or a.dtype == _np.dtype(dtype)):
        return a
    return _new(_np.ascontiguousarray(a._a, dtype=dtype))


def from_dlpack(x: Any) -> ndarray:
    if isinstance(x, ndarray):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        return _from_cai(x)
    try:
        a = _np.from_dlpack(x)  # fake "device" memory is host memory: a zero-copy view
    except (BufferError, RuntimeError) as e:
        if "bfloat16" not in str(getattr(x, "dtype", "")) or _VERSION < 14:
            raise
        from devices.backends.dlpack import from_dlpack_host  # cupy 14 imports kDLBfloat
        try:
            a = from_dlpack_host(x)
        except Exception:  # noqa: BLE001
            raise e from None
    _check_dtype(a.dtype)
    out = ndarray.__new__(ndarray)
    out._a, out._base, out._owner = a, None, x
    out._dev = _current_device()
    return out


fromDlpack = from_dlpack


def _creator(fn: Any):
    def make(*args: Any, **kwargs: Any) -> ndarray:
        _check_args(args, kwargs, fn.__name__)
        _on_current_device(list(args), fn.__name__)
        _flush_current()
        return _new(fn(*unwrap(args), **unwrap(kwargs)))
    make.__name__ = fn.__name__
    return make


empty = _creator(_np.empty)
zeros = _creator(_np.zeros)
ones = _creator(_np.ones)
full = _creator(_np.full)
arange = _creator(_np.arange)
linspace = _creator(_np.linspace)
empty_like = _creator(_np.empty_like)
zeros_like = _creator(_np.zeros_like)
ones_like = _creator(_np.ones_like)
full_like = _creator(_np.full_like)


def copyto(dst: Any, src: Any, casting: str = "same_kind", where: Any = True) -> None:
    """cupy.copyto: across devices too, for contiguous arrays of one dtype and shape (a peer
    copy, which needs no peer access); queued on the current stream."""
    _reject_host(src, "copyto")
    if not isinstance(dst, ndarray):
        raise TypeError(f"copyto: dst must be a cupy.ndarray, received {type(dst)}")
    peer = (isinstance(src, ndarray) and src._dev != dst._dev and where is True and src.dtype == dst.dtype
            and src.shape == dst.shape and src.flags.c_contiguous and dst.flags.c_contiguous)
    if not peer:
        _on_current_device([dst, src, where], "copyto")
    d, v, w = dst._a, unwrap(src), unwrap(where)
    keep = (dst, src, where)  # the arrays (and memory they borrow) live until the copy runs

    def run() -> None:
        _np.copyto(d, v, casting=casting, where=w)
        _ = keep
    get_current_stream()._enqueue(run)


def __getattr__(name: str) -> Any:
    """Anything else cupy mirrors from numpy (add, subtract, abs, sqrt, minimum, allclose, ...):
    only the names real cupy has."""
    if name not in CUPY_NAMES or name.startswith("_"):
        raise AttributeError(f"module 'cupy' has no attribute {name!r} (fakecupy forwards only real cupy's names)")
    fn = getattr(_np, name)
    if not callable(fn) or isinstance(fn, type):
        return fn

    def call(*args: Any, **kwargs: Any) -> Any:
        return _call(fn, args, kwargs, name)
    call.__name__ = name
    return call


# -- compiled kernels: not here -------------------------------------------------------------------
class _NoKernel:
    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs
        self.name = kwargs.get("name") or (args[3] if len(args) > 3 else "kernel")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"fakecupy cannot run CUDA C kernel {self.name!r}: the dry run routes "
                                  f"kernels elsewhere")


class ElementwiseKernel(_NoKernel):
    pass


class ReductionKernel(_NoKernel):
    pass


class RawKernel(_NoKernel):
    pass


class RawModule(_NoKernel):
    def get_function(self, name: str) -> RawKernel:
        return RawKernel(name=name)


def fuse(*args: Any, **kwargs: Any) -> Any:
    """cupy.fuse: here the plain Python function (it runs on fake arrays with numpy semantics)."""
    if args and callable(args[0]) and len(args) == 1 and not kwargs:
        return args[0]
    return lambda f: f


# -- cupy.cuda ------------------------------------------------------------------------------------
cuda = types.ModuleType("cupy.cuda")
runtime = types.ModuleType("cupy.cuda.runtime")
cuda.runtime = runtime


def _device_count() -> int:
    import os
    return int(os.environ.get("FAKECUPY_DEVICES", "1"))


class CUDARuntimeError(RuntimeError):
    pass


class Device:
    """cupy.cuda.Device: a context manager that makes the device current for this thread."""

    def __init__(self, device: Any = None):
        if device is None:
            device = getattr(_tls, "device", 0)
        self.id = int(device)
        if not 0 <= self.id < _device_count():
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self._prev: list = []

    def __enter__(self) -> "Device":
        self._prev.append(getattr(_tls, "device", 0))
        _tls.device = self.id
        return self

    def __exit__(self, *exc: Any) -> None:
        _tls.device = self._prev.pop()

    def use(self) -> None:
        _tls.device = self.id

    def synchronize(self) -> None:
        _flush_all()

    @property
    def compute_capability(self) -> str:
        return "00"

    @property
    def mem_info(self) -> tuple:
        return (1 << 36, 1 << 36)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("Device", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id} (fakecupy)>"


class Event:
    """cupy.cuda.Event: the wall clock at record time, and the position in its stream's queue
    (synchronizing it runs the copies queued before it)."""

    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False):
        self.disable_timing = disable_timing
        self._t: Any = None
        self._stream: Any = None
        self._seq = 0

    def record(self, stream: Any = None) -> None:
        st = stream if stream is not None else get_current_stream()
        self._stream, self._seq = st, st._seq
        self._t = time.perf_counter()

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream._flush(self._seq)

    @property
    def done(self) -> bool:
        return self._stream is None or self._stream._done >= self._seq


def get_elapsed_time(start_event: Event, end_event: Event) -> float:
    if start_event.disable_timing or end_event.disable_timing:
        raise CUDARuntimeError("cudaErrorInvalidResourceHandle: an event was created with disable_timing")
    if start_event._t is None or end_event._t is None:
        raise CUDARuntimeError("cudaErrorInvalidResourceHandle: event not recorded")
    return (end_event._t - start_event._t) * 1e3


_streams: "weakref.WeakSet" = weakref.WeakSet()
_streams_lock = threading.RLock()
_busy: set = set()


class Stream:
    """A queue of pending copies. The legacy default stream (ptr 0) runs everything at once."""

    _next_ptr = 16

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int = 0, priority: Any = None):
        if null:
            self.ptr = 0
        else:
            self.ptr = Stream._next_ptr
            Stream._next_ptr += 1
        self.non_blocking = non_blocking
        self._prev: list = []
        self._queue: list = []  # (seq, fn)
        self._seq = 0           # ops ever enqueued
        self._done = 0          # ops run
        _streams.add(self)

    def _enqueue(self, fn: Any) -> None:
        with _streams_lock:
            if self.ptr == 0:
                # The legacy default stream waits for the blocking streams, then runs at once.
                for st in list(_streams):
                    if st is not self and not st.non_blocking:
                        st._flush()
                fn()
                return
            self._seq += 1
            self._queue.append((self._seq, fn))
            _busy.add(self)  # pending work keeps the stream alive, as the device would run it

    def _flush(self, upto: int | None = None) -> None:
        with _streams_lock:
            while self._queue and (upto is None or self._queue[0][0] <= upto):
                seq, fn = self._queue.pop(0)
                fn()
                self._done = seq
            if not self._queue:
                _busy.discard(self)

    def synchronize(self) -> None:
        self._flush()

    def record(self, event: Any = None) -> Event:
        ev = event or Event()
        ev.record(self)
        return ev

    def wait_event(self, event: Event) -> None:
        event.synchronize()  # what this stream runs next sees that work done

    def use(self) -> "Stream":
        _tls.stream = self
        return self

    def __enter__(self) -> "Stream":
        self._prev.append(getattr(_tls, "stream", None))
        _tls.stream = self
        return self

    def __exit__(self, *exc: Any) -> None:
        _tls.stream = self._prev.pop()

    @property
    def done(self) -> bool:
        return not self._queue


Stream.null = Stream(null=True)  # type: ignore[attr-defined]


def _per_thread_default() -> bool:
    import os
    return os.environ.get("CUPY_CUDA_PER_THREAD_DEFAULT_STREAM") == "1"


def get_current_stream(device_id: int = -1) -> Stream:
    s = getattr(_tls, "stream", None)
    if s is not None:
        return s
    if _per_thread_default():  # each thread's own default stream, ordered only with itself
        pts = getattr(_tls, "per_thread", None)
        if pts is None:
            pts = _tls.per_thread = Stream(non_blocking=True)
        return pts
    return Stream.null  # type: ignore[attr-defined]


def _flush_current() -> None:
    """Stream order: an operation on the current stream runs after the copies queued on it."""
    get_current_stream()._flush()


def _flush_all() -> None:
    with _streams_lock:
        for st in list(_streams):
            st._flush()


class PinnedMemoryPointer(bytearray):
    """Host memory with the buffer protocol (numpy.frombuffer works on it, as on cupy's)."""

    @property
    def ptr(self) -> int:
        return ctypes.addressof((ctypes.c_char * max(len(self), 1)).from_buffer(self)) if len(self) else 0

    @property
    def mem(self) -> "PinnedMemoryPointer":
        return self

    def size(self) -> int:
        return len(self)


def alloc_pinned_memory(size: int) -> PinnedMemoryPointer:
    return PinnedMemoryPointer(int(size))


def alloc(size: int) -> _DataPointer:
    a = empty(int(size), dtype=_np.uint8)
    return _DataPointer(a._a.ctypes.data, a)


def set_allocator(allocator: Any = None) -> None:
    pass


def set_pinned_memory_allocator(allocator: Any = None) -> None:
    pass


for _n, _v in dict(Device=Device, Event=Event, Stream=Stream, get_current_stream=get_current_stream,
                   get_elapsed_time=get_elapsed_time, alloc_pinned_memory=alloc_pinned_memory, alloc=alloc,
                   MemoryPool=MemoryPool, PinnedMemoryPool=PinnedMemoryPool, PinnedMemoryPointer=PinnedMemoryPointer,
                   set_allocator=set_allocator, set_pinned_memory_allocator=set_pinned_memory_allocator,
                   is_available=is_available, CUDARuntimeError=CUDARuntimeError).items():
    setattr(cuda, _n, _v)

memcpyHostToHost, memcpyHostToDevice, memcpyDeviceToHost, memcpyDeviceToDevice, memcpyDefault = 0, 1, 2, 3, 4


def _memcpy(dst: int, src: int, size: int, kind: int) -> None:
    _flush_current()
    if size:
        ctypes.memmove(dst, src, size)


def _memcpy_async(dst: int, src: int, size: int, kind: int, stream: int) -> None:
    """Queued on the stream whose ptr is given (0: the legacy default stream, at once)."""
    with _streams_lock:
        target = next((s for s in _streams if s.ptr == stream), None)
    if target is None:
        raise CUDARuntimeError(f"cudaErrorInvalidResourceHandle: no stream {stream} (fakecupy)")

    def run() -> None:
        if size:
            ctypes.memmove(dst, src, size)
    target._enqueue(run)


def _properties(device: int) -> dict:
    return {"name": b"fakecupy (numpy on the CPU)", "totalGlobalMem": 1 << 36, "multiProcessorCount": 0,
            "major": 0, "minor": 0, "l2CacheSize": 0, "clockRate": 0, "memoryClockRate": 0,
            "memoryBusWidth": 0}


for _n, _v in dict(getDeviceCount=_device_count, getDevice=lambda: getattr(_tls, "device", 0),
                   setDevice=lambda d: setattr(_tls, "device", int(d)), memcpy=_memcpy,
                   memcpyAsync=_memcpy_async, getDeviceProperties=_properties, deviceSynchronize=_flush_all,
                   memGetInfo=lambda: (1 << 36, 1 << 36), runtimeGetVersion=lambda: 13000,
                   driverGetVersion=lambda: 13000, CUDARuntimeError=CUDARuntimeError,
                   memcpyHostToHost=0, memcpyHostToDevice=1, memcpyDeviceToHost=2,
                   memcpyDeviceToDevice=3, memcpyDefault=4).items():
    setattr(runtime, _n, _v)


# -- cupy.random ----------------------------------------------------------------------------------
random = types.ModuleType("cupy.random")


class BitGenerator:
    def __init__(self, seed: Any = None):
        self.seed = seed


class XORWOW(BitGenerator):
    pass


class Generator:
    """cupy.random.Generator's API over numpy's generator (different numbers; same calls)."""

    def __init__(self, bit_generator: BitGenerator):
        self.bit_generator = bit_generator
        self._g = _np.random.default_rng(bit_generator.seed)
        self._dev = _current_device()  # cuRAND state lives on this device

    def __getattribute__(self, name: str) -> Any:
        if name in ("standard_normal", "random", "integers", "normal", "uniform"):
            dev = object.__getattribute__(self, "_dev")
            if dev != _current_device():
                raise CUDARuntimeError(f"cudaErrorIllegalAddress: a Generator made on device {dev} used with "
                                       f"device {_current_device()} current (fakecupy)")
            _flush_current()
        return object.__getattribute__(self, name)

    def _out(self, res: Any, out: Any) -> Any:
        if out is not None:
            return out
        return _new(_np.asarray(res))

    def standard_normal(self, size: Any = None, dtype: Any = _np.float64, out: Any = None) -> ndarray:
        if out is not None and not isinstance(out, ndarray):
            raise TypeError("out must be a cupy.ndarray")
        return self._out(self._g.standard_normal(size, dtype=dtype, out=unwrap(out)), out)

    def random(self, size: Any = None, dtype: Any = _np.float64, out: Any = None) -> ndarray:
        if out is not None and not isinstance(out, ndarray):
            raise TypeError("out must be a cupy.ndarray")
        return self._out(self._g.random(size, dtype=dtype, out=unwrap(out)), out)

    def integers(self, low: Any, high: Any = None, size: Any = None, dtype: Any = _np.int64,
                 endpoint: bool = False) -> ndarray:
        return _new(_np.asarray(self._g.integers(low, high, size, dtype=dtype, endpoint=endpoint)))

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None, dtype: Any = _np.float64) -> ndarray:
        return _new(_np.asarray((loc + scale * self._g.standard_normal(size)).astype(dtype)))

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None, dtype: Any = _np.float64) -> ndarray:
        return _new(_np.asarray(self._g.uniform(low, high, size).astype(dtype)))


def default_rng(seed: Any = None) -> Generator:
    return Generator(XORWOW(seed))


_global_rngs: dict = {}  # one per device, as cupy's


class _GlobalRng:
    def __getitem__(self, _i: int) -> Generator:
        dev = _current_device()
        g = _global_rngs.get(dev)
        if g is None:
            g = _global_rngs[dev] = default_rng(None)
        return g


_global_rng = _GlobalRng()


def _seed(s: Any = None) -> None:
    _global_rngs[_current_device()] = default_rng(s)


for _n, _v in dict(Generator=Generator, BitGenerator=BitGenerator, XORWOW=XORWOW, default_rng=default_rng,
                   seed=_seed,
                   standard_normal=lambda size=None, dtype=_np.float64: _global_rng[0].standard_normal(size, dtype),
                   random=lambda size=None, dtype=_np.float64: _global_rng[0].random(size, dtype),
                   rand=lambda *size, dtype=_np.float64: _global_rng[0].random(size or None, dtype),
                   randn=lambda *size, dtype=_np.float64: _global_rng[0].standard_normal(size or None, dtype),
                   uniform=lambda low=0.0, high=1.0, size=None, dtype=_np.float64:
                       _global_rng[0].uniform(low, high, size, dtype),
                   normal=lambda loc=0.0, scale=1.0, size=None, dtype=_np.float64:
                       _global_rng[0].normal(loc, scale, size, dtype)).items():
    setattr(random, _n, _v)


# -- cupy.testing ---------------------------------------------------------------------------------
testing = types.ModuleType("cupy.testing")


def _host(x: Any) -> Any:
    return x.get() if isinstance(x, ndarray) else x


testing.assert_array_equal = lambda a, b, *args, **kw: _np.testing.assert_array_equal(_host(a), _host(b), *args, **kw)
testing.assert_allclose = lambda a, b, *args, **kw: _np.testing.assert_allclose(_host(a), _host(b), *args, **kw)

for _mod in (cuda, runtime, random, testing):
    sys.modules[_mod.__name__] = _mod
