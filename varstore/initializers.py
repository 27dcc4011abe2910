"""Deferred initial values and TF 1.x's initializer objects.

``tf.random_normal([784, 200], stddev=0.35)`` allocates and draws nothing:
it describes a value. The variable's initializer evaluates it later, on
the variable's device (cupy's generator on a GPU). Arithmetic on deferred
values (``w.initialized_value() * 2.0``) builds more of them.

>>> import varstore as tf
>>> init = tf.zeros([2, 3])
>>> init.shape.as_list(), init.dtype.name
([2, 3], 'float32')
"""
from __future__ import annotations

import math
import operator
import threading
import weakref
from typing import Any

import numpy as np

from devices.backends.arrays import host_array
from devices.backends.ps import register_operations
from devices.dtypes import as_dtype, is_floating
from devices.errors import InvalidArgumentError, InvalidTypeError
from devices.shapes import as_shape, num_elements

from .graph import as_seed, get_default_graph
from .ops import RunContext
from .tensors import Apply, Tensor

DEFAULT_GRAPH_SEED = 87654321  # TF's, used when only the op-level seed is set
_CPU_BLOCK = 1 << 16  # elements per block when drawing on the CPU: scaling stays in cache
# One generator per device for values without a seed: seeding a fresh generator from OS
# entropy costs ~20 us, more than drawing a small variable's values.
_unseeded_rngs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_unseeded_lock = threading.Lock()


# Initial values are tensors: deferred values a run evaluates on the variable's device.
InitialValue = Tensor


class Fill(InitialValue):
    """zeros, ones, fill: every element the same value."""

    def __init__(self, shape, value, dtype):
        self.shape, self.dtype = as_shape(shape), as_dtype(dtype)
        self.value = _exact_scalar(value, self.dtype, "fill value")

    def _eval(self, device, ctx):
        out = device.empty(self.shape, self.dtype)
        out[...] = self.value
        return out

    def describe(self):
        value = _py(self.value)
        if isinstance(value, complex):  # msgpack has no complex: [real, imag]
            value = [value.real, value.imag]
        return {"kind": "fill", "shape": list(self.shape), "dtype": self.dtype.name, "value": value}


class Constant(InitialValue):
    """A value given by the user (scalar, list, numpy or cupy array), kept on the host until needed."""

    def __init__(self, value, dtype=None, shape=None):
        arr = src = _to_numpy(value)
        dt = arr.dtype if dtype is None else as_dtype(dtype)
        if dtype is None:
            dt = _default_dtype(value, arr)
        elif hasattr(value, "dtype") and not isinstance(value, np.generic):  # numpy, cupy, torch arrays
            _check_cast(arr.dtype, dt, "initial value", values=arr)
        else:
            arr = _exact_array(arr, dt, "initial value")
        arr = arr.astype(dt, copy=False)
        if shape is not None:
            shape = as_shape(shape)
            if arr.size == 1:
                arr = np.full(shape, arr.reshape(()), dtype=dt)
            elif arr.size == num_elements(shape):
                arr = arr.reshape(shape)
            else:
                raise InvalidArgumentError(
                    f"constant: {arr.size} values cannot fill shape {shape} (expected 1 or {num_elements(shape)})")
        if not (src is not value and src.base is None) and np.may_share_memory(arr, src):
            # The caller's own buffer (numpy, or torch through __array__): take the value as it
            # is now, as TF does, so that reusing or changing that buffer later changes nothing.
            arr = arr.copy()
        self.array = arr
        self.shape, self.dtype = tuple(arr.shape), arr.dtype

    def _eval(self, device, ctx):
        return device.asarray(self.array, copy=True)

    def describe(self):
        if self.array.nbytes > 64 << 10:  # big literals belong in the checkpoint, not the meta graph
            return None
        a = np.ascontiguousarray(self.array)
        return {"kind": "constant", "shape": list(self.shape), "dtype": self.dtype.name,
                "data": a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()}


class _Random(InitialValue):
    """Shared seed handling: TF's (graph seed, op seed) pair, and a generator per device that
    persists across runs, so re-running an initializer continues the sequence as TF does."""

    def __init__(self, shape, dtype, seed):
        self.shape, self.dtype = as_shape(shape), as_dtype(dtype)
        g = get_default_graph()
        op_seed = as_seed(seed)
        if g.seed is not None:
            self.seeds = (g.seed, op_seed if op_seed is not None else g.next_op_id())
        elif op_seed is not None:
            self.seeds = (DEFAULT_GRAPH_SEED, op_seed)
        else:
            self.seeds = None
        self._rngs: dict = {}

    def _rng(self, device):
        if self.seeds is None:
            with _unseeded_lock:
                rng = _unseeded_rngs.get(device)
                if rng is None:
                    rng = _unseeded_rngs[device] = device.rng(None)
            return rng
        rng = self._rngs.get(device.name)
        if rng is None:
            seed = None
            if self.seeds is not None:
                # TF seeds are any int64; SeedSequence takes only non-negative ints.
                entropy = [int(s) % (1 << 64) for s in self.seeds]
                seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
            rng = self._rngs[device.name] = device.rng(seed)
        return rng

    def _float_out(self, device):
        """Where to draw: float32/float64 directly, half types via a float32 buffer."""
        if not is_floating(self.dtype):
            raise InvalidArgumentError(
                f"{type(self).__name__}: dtype must be a floating type, received {self.dtype.name}")
        return self.dtype if self.dtype in (np.float32, np.float64) else np.dtype(np.float32)

    def _blocks(self, device, arr):
        """Flat views of ``arr`` to fill one at a time (small blocks on the CPU keep scaling in cache)."""
        flat = arr.reshape(-1)
        step = _CPU_BLOCK if device.kind == "cpu" else max(flat.size, 1)
        return [flat[i:i + step] for i in range(0, flat.size, step)]

    def _finish(self, device, work):
        if work.dtype == self.dtype:
            return work
        out = device.empty(self.shape, self.dtype)
        out[...] = work.astype(self.dtype)
        return out

    def _seed_desc(self):
        return None if self.seeds is None else list(self.seeds)


class RandomNormal(_Random):
    """Normal values; with ``truncated``, values beyond 2 stddev are redrawn (TF's truncated_normal)."""

    def __init__(self, shape, mean=0.0, stddev=1.0, dtype="float32", seed=None, truncated=False):
        super().__init__(shape, dtype, seed)
        self._float_out(None)  # a bad dtype fails here, not when the initializer runs
        self.mean, self.stddev, self.truncated = float(mean), float(stddev), bool(truncated)

    def _eval(self, device, ctx):
        wdt = self._float_out(device)
        work = device.empty(self.shape, wdt)
        rng = self._rng(device)
        xp = device.xp
        for blk in self._blocks(device, work):
            rng.standard_normal(dtype=wdt, out=blk)
            if self.truncated:
                while True:
                    bad = xp.abs(blk) > 2.0
                    n = int(bad.sum())
                    if not n:
                        break
                    blk[bad] = rng.standard_normal(size=n, dtype=wdt)
            if self.stddev != 1.0:
                blk *= wdt.type(self.stddev)
            if self.mean != 0.0:
                blk += wdt.type(self.mean)
        return self._finish(device, work)

    def describe(self):
        return {"kind": "truncated_normal" if self.truncated else "random_normal", "shape": list(self.shape),
                "dtype": self.dtype.name, "mean": self.mean, "stddev": self.stddev, "seeds": self._seed_desc()}


class RandomUniform(_Random):
    """Uniform values in [minval, maxval) (integers: maxval required)."""

    def __init__(self, shape, minval=0, maxval=None, dtype="float32", seed=None):
        super().__init__(shape, dtype, seed)
        if self.dtype.kind in "iu":
            if maxval is None:
                raise InvalidArgumentError(f"random_uniform: maxval must be given for integer dtype {self.dtype.name}")
            minval, maxval = _integral(minval, "minval", self.dtype), _integral(maxval, "maxval", self.dtype)
            if maxval <= minval:
                raise InvalidArgumentError(f"random_uniform: need minval < maxval, received {minval}, {maxval}")
            info = np.iinfo(self.dtype)
            if minval < info.min or maxval - 1 > info.max:
                raise InvalidArgumentError(
                    f"random_uniform: [{minval}, {maxval}) is outside the range of {self.dtype.name} "
                    f"[{info.min}, {info.max}]")
        else:
            self._float_out(None)  # a bad dtype fails here, not when the initializer runs
            minval, maxval = float(minval), 1.0 if maxval is None else float(maxval)
        self.minval, self.maxval = minval, maxval

    def _eval(self, device, ctx):
        rng = self._rng(device)
        if self.dtype.kind in "iu":
            out = device.empty(self.shape, self.dtype)
            out[...] = rng.integers(self.minval, self.maxval, size=self.shape, dtype=self.dtype)
            return out
        wdt = self._float_out(device)
        work = device.empty(self.shape, wdt)
        span = wdt.type(self.maxval - self.minval)
        # rng.random is in [0, 1), but scaling, shifting or narrowing to a half type can round
        # a value up to maxval (float16: ~1 in 4000 draws of [0, 1) become 1.0): clamp those.
        clamp = span != 1 or self.minval != 0
        hi = _below(wdt, self.maxval, self.minval) if clamp and wdt == self.dtype else None
        for blk in self._blocks(device, work):
            rng.random(dtype=wdt, out=blk)
            if span != 1:
                blk *= span
            if self.minval:
                blk += wdt.type(self.minval)
            if hi is not None:
                device.xp.minimum(blk, hi, out=blk)
        out = self._finish(device, work)
        if out is not work:
            hi = _below(self.dtype, self.maxval, self.minval)
            if hi is not None:
                device.xp.minimum(out, hi, out=out)
        return out

    def describe(self):
        return {"kind": "random_uniform", "shape": list(self.shape), "dtype": self.dtype.name,
                "minval": self.minval, "maxval": self.maxval, "seeds": self._seed_desc()}


def _integral(x, what: str, dtype: np.dtype) -> int:
    """``x`` as an exact int (2 and 2.0 are, 2.5 is not)."""
    try:
        return operator.index(x)
    except TypeError:
        pass
    try:
        f = float(x)
    except (TypeError, ValueError):
        f = math.nan
    if not f.is_integer():
        raise InvalidArgumentError(f"random_uniform: {what} must be an integer for {dtype.name}, received {x!r}")
    return int(f)


def _below(dtype: np.dtype, maxval: float, minval: float):
    """The largest ``dtype`` value strictly below ``maxval`` (None when it would fall below ``minval``)."""
    hi = np.asarray(maxval, dtype)
    if float(hi) >= maxval:
        hi = np.nextafter(hi, np.asarray(-np.inf, dtype))
    return hi[()] if float(hi) >= minval else None


class VariableValue(InitialValue):
    """A variable's value: ``initialized_value()`` (its initializer runs first when due)
    or a plain read (``Variable`` used in an expression)."""

    _base_name = "read"

    def __init__(self, var, initialize: bool):
        self.var, self.initialize = var, initialize
        self.shape, self.dtype = var.storage.shape, var._dtype

    def _eval(self, device, ctx):
        var = self.var
        if self.initialize and (id(var) in ctx.run_variables or not var.is_initialized):
            # TF's initialized_value(): the variable's value if it is initialized, else its
            # initial value, computed once per run on its own device (so an initializer of
            # this variable in the same run gets the same draw); the variable itself is left
            # as it is. A ps task computes initial values there: it is initialized first.
            if var.device_object.kind not in ("cpu", "gpu"):
                ctx.ensure(var)
                return device.asarray(var._live(), copy=True)
            if any(v is var for v in ctx.in_progress):
                names = [v._name for v in ctx.in_progress[[id(v) for v in ctx.in_progress].index(id(var)):]]
                raise InvalidArgumentError(f"initialized_value() cycle: {' -> '.join(names + [var._name])}")
            ctx.in_progress.append(var)
            try:
                value = ctx.value(var._initial, var.device_object)
            finally:
                ctx.in_progress.pop()
            return device.asarray(value, copy=True)
        with var.storage.lock:  # a consistent copy, even while another thread assigns
            return device.asarray(var._live(), copy=True)

    def dependencies(self):
        return [self.var] if self.initialize else []

    def variables(self):
        return [self.var]

    def describe(self):
        return {"kind": "initialized_value" if self.initialize else "read", "variable": self.var.op.name}


def BinaryOp(op, a, b):  # noqa: N802 - the older node name, kept for meta graphs and callers
    return Apply(op, [a, b])


def Negate(x):  # noqa: N802
    return Apply("neg", [x])


class Callable_(InitialValue):
    """``Variable(lambda: ...)``: the function is called when the initializer runs."""

    def __init__(self, fn, dtype=None):
        probe = as_initial_value(fn(), dtype)
        self.fn, self.shape, self.dtype = fn, probe.shape, probe.dtype
        self._probe = probe

    def _eval(self, device, ctx):
        probe, self._probe = self._probe, None
        return (probe if probe is not None else as_initial_value(self.fn(), self.dtype)).evaluate(device, ctx)

    def dependencies(self):
        return self._probe.dependencies() if self._probe is not None else []


# -- conversion ---------------------------------------------------------------
def as_initial_value(value: Any, dtype: Any = None) -> InitialValue:
    """Any accepted initial value (deferred value, Variable, scalar, list, numpy/cupy array)."""
    from .variables import Variable
    if isinstance(value, InitialValue):
        if dtype is not None and as_dtype(dtype) != value.dtype:
            raise InvalidArgumentError(
                f"initial value has dtype {value.dtype.name}, but dtype={as_dtype(dtype).name} was requested")
        return value
    if isinstance(value, Variable):
        v = VariableValue(value, initialize=False)
        return as_initial_value(v, dtype)
    if callable(value) and not hasattr(value, "__array__"):
        return Callable_(value, dtype)
    return Constant(value, dtype)


def _to_numpy(value):
    if value is None:
        raise InvalidArgumentError("initial value: expected a value, received None")
    if hasattr(value, "__cuda_array_interface__"):
        from devices import to_host
        return to_host(value)
    if not isinstance(value, (np.ndarray, np.generic, list, tuple, int, float, complex)) \
            and (hasattr(value, "__dlpack__") or hasattr(value, "__array__")):
        # Another library's array (torch, DLPack-only objects, bfloat16 through DLPack): the one
        # conversion every path uses, with its clear errors (a tensor that requires grad...).
        value = host_array(value)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InvalidArgumentError(f"initial value: cannot convert {type(value).__name__} to an array: {e}") from None
    if arr.dtype == object or arr.dtype.kind in "USV" and arr.dtype.name != "bfloat16":
        raise InvalidArgumentError(
            f"initial value: expected numbers or bools, received {type(value).__name__} of dtype {arr.dtype}")
    return arr


def _default_dtype(value, arr) -> np.dtype:
    # Python floats become float32 and ints int32, as in TF; numpy arrays keep their dtype.
    if isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__") or hasattr(value, "dtype"):
        return as_dtype(arr.dtype)
    if arr.dtype.kind == "f":
        return np.dtype(np.float32)
    if arr.dtype.kind in "iu":
        return np.dtype(np.int32)
    return as_dtype(arr.dtype)


def _check_cast(src: np.dtype, dst: np.dtype, what: str, values: Any = None) -> None:
    """Arrays may change precision within a kind (float64 -> float32), never kind (float -> int).

    With ``values``, a narrowing integer cast also checks that every value fits: int64 300
    must not become int8 44.
    """
    src = np.dtype(src)
    ok = src == dst or np.can_cast(src, dst, "same_kind") or (is_floating(src) and is_floating(dst))
    if not ok:
        raise InvalidTypeError(f"{what}: dtype {src.name} cannot be converted to {dst.name} "
                                   f"(only casts within a kind, or from int to float, are implicit)")
    if (values is not None and src.kind in "iu" and dst.kind in "iu" and not np.can_cast(src, dst, "safe")
            and getattr(values, "size", 0) and hasattr(values, "min")):
        info = np.iinfo(dst)
        lo, hi = int(values.min()), int(values.max())
        if lo < info.min or hi > info.max:
            raise InvalidArgumentError(f"{what}: {src.name} values in [{lo}, {hi}] do not fit {dst.name} "
                                       f"[{info.min}, {info.max}]")


def _exact_array(arr: np.ndarray, dt: np.dtype, what: str) -> np.ndarray:
    """Python literals convert only when every value is represented exactly (1.5 is no int32)."""
    out = arr.astype(dt)
    if arr.dtype.kind in "fc" and dt.kind in "iub" and not np.array_equal(out.astype(arr.dtype), arr):
        raise InvalidTypeError(f"{what}: {arr.tolist()!r} is not exactly representable as {dt.name}")
    if arr.dtype.kind in "iu" and dt.kind in "iu" and not np.array_equal(out.astype(np.int64), arr):
        raise InvalidArgumentError(f"{what}: {arr.tolist()!r} is out of range for {dt.name}")
    return out


def _exact_scalar(value, dt: np.dtype, what: str):
    return _exact_array(np.asarray(_to_numpy(value)), dt, what)[()]


def _py(x):
    return x.item() if hasattr(x, "item") else x


# -- the public constructors -------------------------------------------------------
def zeros(shape, dtype="float32", name=None) -> InitialValue:
    """A deferred tensor of zeros. ``tf.Variable(tf.zeros([200]), name="biases")``"""
    return Fill(shape, 0, dtype)._setup("zeros", name)


def ones(shape, dtype="float32", name=None) -> InitialValue:
    """A deferred tensor of ones. ``tf.ones([2, 3])``"""
    return Fill(shape, 1, dtype)._setup("ones", name)


def fill(dims, value, name=None) -> InitialValue:
    """A deferred tensor of ``dims`` filled with ``value`` (dtype from the value, as in TF).

    >>> fill([2], 7).dtype.name
    'int32'
    """
    return Fill(dims, value, _default_dtype(value, _to_numpy(value)))._setup("Fill", name)


def constant(value, dtype=None, shape=None, name=None) -> InitialValue:
    """A deferred constant; a scalar with ``shape`` is broadcast, as in TF.

    >>> constant(1.5, shape=[2]).shape.as_list()
    [2]
    """
    return Constant(value, dtype, shape)._setup("Const", name)


def random_normal(shape, mean=0.0, stddev=1.0, dtype="float32", seed=None, name=None) -> InitialValue:
    """Deferred normal values, drawn on the variable's device when its initializer runs.

    >>> w = random_normal([784, 200], stddev=0.35)
    >>> w.shape.as_list()
    [784, 200]
    """
    return RandomNormal(shape, mean, stddev, dtype, seed)._setup("random_normal", name)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype="float32", seed=None, name=None) -> InitialValue:
    """Like random_normal, values more than 2 stddev from the mean redrawn."""
    return RandomNormal(shape, mean, stddev, dtype, seed, truncated=True)._setup("truncated_normal", name)


def random_uniform(shape, minval=0, maxval=None, dtype="float32", seed=None, name=None) -> InitialValue:
    """Deferred uniform values in [minval, maxval) (maxval defaults to 1 for floats)."""
    return RandomUniform(shape, minval, maxval, dtype, seed)._setup("random_uniform", name)


# -- meta graph: rebuild from data ------------------------------------------------------
def from_description(desc: dict, lookup_variable) -> InitialValue:
    """Rebuild a deferred value from :meth:`InitialValue.describe` data.

    ``lookup_variable(name)`` returns the Variable a description refers to.
    Unknown kinds raise InvalidArgumentError (the caller decides what to do).
    """
    kind = desc.get("kind") if isinstance(desc, dict) else None
    seeds = desc.get("seeds")
    if kind == "fill":
        value = desc["value"]
        if isinstance(value, list) and len(value) == 2 and as_dtype(desc["dtype"]).kind == "c":
            value = complex(*value)
        return Fill(desc["shape"], value, desc["dtype"])
    if kind == "constant":
        dt = as_dtype(desc["dtype"])
        shape = as_shape(desc["shape"])
        data = desc["data"]
        if not isinstance(data, bytes) or len(data) != num_elements(shape) * dt.itemsize:
            raise InvalidArgumentError(f"constant: data holds {len(data) if isinstance(data, bytes) else '?'} "
                                       f"bytes, shape {shape} {dt.name} needs {num_elements(shape) * dt.itemsize}")
        return Constant(np.frombuffer(data, dt.newbyteorder("<")).astype(dt).reshape(shape), dt)
    if kind in ("random_normal", "truncated_normal"):
        v = RandomNormal(desc["shape"], desc["mean"], desc["stddev"], desc["dtype"], None,
                         truncated=kind == "truncated_normal")
        v.seeds = None if seeds is None else tuple(int(s) for s in seeds)
        return v
    if kind == "random_uniform":
        v = RandomUniform(desc["shape"], desc["minval"], desc["maxval"], desc["dtype"], None)
        v.seeds = None if seeds is None else tuple(int(s) for s in seeds)
        return v
    if kind in ("initialized_value", "read"):
        return VariableValue(lookup_variable(desc["variable"]), initialize=kind == "initialized_value")
    if kind == "binary":
        return BinaryOp(desc["op"], from_description(desc["a"], lookup_variable),
                        from_description(desc["b"], lookup_variable))
    if kind == "negate":
        return Negate(from_description(desc["x"], lookup_variable))
    if kind == "apply":
        attrs = dict(desc.get("attrs") or {})
        if "dtype" in attrs:
            attrs["dtype"] = as_dtype(attrs["dtype"])
        for k in ("shape", "perm", "axis"):
            if isinstance(attrs.get(k), list):
                attrs[k] = tuple(attrs[k])
        attrs.pop("as_float", None)
        return Apply(desc["op"], [from_description(x, lookup_variable) for x in desc["inputs"]], **attrs)
    raise InvalidArgumentError(f"unknown initializer kind {kind!r}")


class Undescribed(InitialValue):
    """The initial value of a variable rebuilt from a meta graph without a describable
    initializer: it waits for ``restore``."""

    def __init__(self, name, shape, dtype):
        self.var_name, self.shape, self.dtype = name, as_shape(shape), as_dtype(dtype)

    def _eval(self, device, ctx):
        from devices.errors import FailedPreconditionError
        raise FailedPreconditionError(
            f"{self.var_name} was imported from a meta graph without an initializer; restore it from a checkpoint")


# ps tasks rebuild and evaluate initial values with these (the driver sends them by reference).
register_operations(build_initial=from_description, new_context=RunContext)
