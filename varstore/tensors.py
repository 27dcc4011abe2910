"""Tensors: deferred values over variables, constants and placeholders, evaluated by a run.

A tensor describes a value; ``sess.run(t, feed_dict=...)`` (or ``t.eval()``)
computes it on a device, each tensor at most once per run. The operators
``+ - * / // % ** @``, unary ``-`` and ``abs()``, and the functions below
build more tensors. This is what variable code needs (update rules written as
``w.assign(w * 0.9 + ph * 0.1)``), not a general TF: there is no autodiff.

>>> import numpy as np, varstore as tf
>>> tf.reset_default_graph()
>>> x = tf.placeholder(tf.float32, [None, 2], name="x")
>>> y = tf.reduce_sum(x * 2.0, axis=1)
>>> with tf.Session() as sess:
...     sess.run(y, feed_dict={x: np.ones((3, 2))}).tolist()
[4.0, 4.0, 4.0]
"""
from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

import devices
from devices.backends.arrays import host_array
from devices.dtypes import as_dtype
from devices.errors import InvalidArgumentError, InvalidTypeError
from devices.shapes import TensorShape

from .graph import get_default_graph
from .ops import RunContext, current_control_inputs, executing_eagerly, op_name, register, run_now


class Tensor:
    """A deferred value with a ``shape`` (None for unknown dims or rank) and a numpy ``dtype``.

    Subclasses implement ``_eval(device, ctx)``, returning a new array on ``device``
    (``ctx.value(x, device)`` gives an input's value).
    """

    control_inputs: tuple = ()
    _shape: tuple | None = None  # dims as ints, None for an unknown one; None for an unknown rank
    _dtype: np.dtype | None = None  # numpy's: what computing with the value needs
    _op_name: str | None = None
    _base_name = "Tensor"

    @property
    def shape(self) -> Any:
        """TF's TensorShape (``as_list()``, ``ndims``; unknown dims for placeholders)."""
        return TensorShape(self._shape)

    @shape.setter
    def shape(self, value: Any) -> None:
        if value is None or (hasattr(value, "ndims") and value.ndims is None):  # unknown rank
            self._shape = None
        else:
            self._shape = tuple(getattr(d, "value", d) for d in value)

    @property
    def dtype(self) -> Any:
        """TF's DType (``name``, ``base_dtype``, ``is_floating``...); numpy takes it as a dtype."""
        try:
            return as_dtype(self._dtype)
        except InvalidArgumentError:  # a host-only value TF has no dtype for (names as bytes)
            return self._dtype

    @dtype.setter
    def dtype(self, value: Any) -> None:
        self._dtype = np.dtype(value)

    # -- identity: names, graph, op ----------------------------------------------------
    def _setup(self, base: str, name: str | None = None) -> Tensor:
        """Name this tensor in the current graph and scope, and pick up control dependencies.

        Eager mode names nothing: an eager loop would otherwise register a name per step.
        """
        self.graph = get_default_graph()
        if executing_eagerly():
            return self
        self._scope = devices.current_device()
        self._op_name = op_name(base, name, self.graph)
        register(self.graph, self._op_name, self)
        self.control_inputs = current_control_inputs()
        return self

    @property
    def name(self) -> str:
        """``"scope/op:0"`` as in TF (an unnamed intermediate gets its name on first use)."""
        if self._op_name is None:
            g = self.__dict__.get("graph") or get_default_graph()
            self._op_name = op_name(self._base_name, None, g)
            register(g, self._op_name, self)
        return f"{self._op_name}:0"

    @property
    def op(self) -> TensorOp:
        return TensorOp(self)

    def __getattr__(self, item: str) -> Any:
        if item == "graph":
            return get_default_graph()
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {item!r}")

    @property
    def device(self) -> str:
        return self._home_device().name

    def get_shape(self) -> Any:
        return TensorShape(self._shape)

    # -- evaluation --------------------------------------------------------------------
    def evaluate(self, device: Any, ctx: RunContext) -> Any:
        """This tensor's value as an array on ``device`` within the run ``ctx``."""
        return ctx.value(self, device)

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        raise NotImplementedError

    def _feed(self, value: Any, device: Any) -> Any:
        """A fed value (its shape already checked by the session), converted to this tensor's
        dtype where that is exact, on ``device``."""
        if type(value) is np.ndarray and value.dtype == self._dtype and device.kind == "cpu":
            return value  # the common case, ~1 us: a training loop feeds thousands per step
        from .initializers import _check_cast, _exact_array, _to_numpy
        if not isinstance(getattr(value, "dtype", None), (np.dtype, type(None))) and hasattr(value, "shape"):
            # Another library's array (a torch tensor): as a device array of this GPU (no copy)
            # or as numpy (host_array: __array__ or DLPack), then the checks below.
            value = device.asarray(value) if (device.kind == "gpu" and hasattr(value, "__cuda_array_interface__")) \
                else host_array(value)
        if getattr(value, "dtype", None) is not None and not isinstance(value, np.generic) \
                and hasattr(value, "shape"):
            _check_cast(value.dtype, self._dtype, f"feed for {self.name}", values=value)
            arr = value if value.dtype == self._dtype else device.asarray(value, dtype=self._dtype)
        else:
            arr = _exact_array(_to_numpy(value), self._dtype, f"feed for {self.name}")
        return device.asarray(arr, dtype=self._dtype)

    def _home_device(self) -> Any:
        """Where this tensor is computed when fetched: its first variable's device, else the device
        scope it was created in (as TF places an op), else the current one."""
        for v in self.variables():
            return v.device_object
        scope = self.__dict__.get("_scope")
        return devices.get_device(scope if scope is not None else devices.current_device())

    def dependencies(self) -> list:
        """Variables whose initializers must run before this value (``initialized_value()``)."""
        return []

    def variables(self) -> list:
        """Every variable this value reads (a remote device ships their values along)."""
        return []

    def describe(self) -> dict | None:
        """Data (no code) that rebuilds this value, for meta graphs; None if it can't be described."""
        return None

    def eval(self, feed_dict: Any = None, session: Any = None) -> Any:
        """The value as a host array, computed in ``session`` (default: the default session)."""
        return run_now(self, session, feed_dict)

    def numpy(self) -> Any:
        """The value as a host array (eager style; in graph mode, a one-off run)."""
        return run_now(self)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if not executing_eagerly():
            raise TypeError(f"Tensor {self.name} is symbolic in graph mode: run it (sess.run(t) or t.eval()) "
                            f"to get an array")
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    def __bool__(self) -> bool:
        raise TypeError("Using a Tensor as a Python bool is not allowed: run it (sess.run(t)) and test the value")

    def __iter__(self):
        # Without this, Python would iterate through __getitem__ for ever (each item a new tensor).
        raise TypeError(f"Tensor {self.name} is not iterable in graph mode: run it (sess.run(t)) and iterate "
                        f"over the value")

    # -- arithmetic builds tensors --------------------------------------------------------
    def _bin(self, other: Any, op: str, reverse: bool = False) -> Tensor:
        other = convert_to_tensor(other, self.dtype if not isinstance(other, Tensor) else None)
        a, b = (other, self) if reverse else (self, other)
        return binary(op, a, b)

    def __add__(self, o): return self._bin(o, "add")
    def __radd__(self, o): return self._bin(o, "add", True)
    def __sub__(self, o): return self._bin(o, "sub")
    def __rsub__(self, o): return self._bin(o, "sub", True)
    def __mul__(self, o): return self._bin(o, "mul")
    def __rmul__(self, o): return self._bin(o, "mul", True)
    def __truediv__(self, o): return self._bin(o, "truediv")
    def __rtruediv__(self, o): return self._bin(o, "truediv", True)
    def __floordiv__(self, o): return self._bin(o, "floordiv")
    def __rfloordiv__(self, o): return self._bin(o, "floordiv", True)
    def __mod__(self, o): return self._bin(o, "mod")
    def __rmod__(self, o): return self._bin(o, "mod", True)
    def __pow__(self, o): return self._bin(o, "pow")
    def __rpow__(self, o): return self._bin(o, "pow", True)
    def __matmul__(self, o): return matmul(self, o)
    def __rmatmul__(self, o): return matmul(o, self)
    def __lt__(self, o): return self._bin(o, "less")
    def __le__(self, o): return self._bin(o, "less_equal")
    def __gt__(self, o): return self._bin(o, "greater")
    def __ge__(self, o): return self._bin(o, "greater_equal")
    def __neg__(self): return _new("neg", [self])
    def __abs__(self): return _new("abs", [self])
    def __getitem__(self, key): return _new("getitem", [self], key=_check_key(key))

    __hash__ = object.__hash__  # tensors are feed_dict keys; == stays identity, as in TF 1.x
    __array_priority__ = 100  # numpy defers to our reflected operators

    def __repr__(self) -> str:
        name = self._op_name + ":0" if self._op_name else type(self).__name__
        return f"<varstore.Tensor '{name}' shape={self.shape} dtype={self.dtype.name}>"


class TensorOp:
    """``t.op``: the op that produces ``t`` (its name without ``:0``; running it runs the tensor)."""

    def __init__(self, tensor: Tensor):
        self._tensor = tensor

    @property
    def name(self) -> str:
        return self._tensor.name[:-2]

    @property
    def type(self) -> str:
        return type(self._tensor).__name__

    @property
    def graph(self) -> Any:
        return self._tensor.graph

    @property
    def outputs(self) -> list:
        return [self._tensor]

    @property
    def control_inputs(self) -> tuple:
        return self._tensor.control_inputs

    def _run(self, ctx: RunContext) -> None:
        ctx.value(self._tensor, self._tensor._home_device())

    def _eval(self, device: Any, ctx: RunContext) -> Any:  # as a control input
        return ctx.value(self._tensor, device)

    def _fetch_value(self, ctx: RunContext) -> None:
        self._run(ctx)
        return None

    def run(self, feed_dict: Any = None, session: Any = None) -> None:
        run_now(self, session, feed_dict)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, TensorOp) and other._tensor is self._tensor

    def __hash__(self) -> int:
        return id(self._tensor)

    def __repr__(self) -> str:
        return f"<varstore.Operation '{self.name}'>"


def check_feed_shape(t: Tensor, shape: tuple) -> None:
    """ValueError (TF's class) when a fed value's shape does not fit ``t``'s."""
    want = t._shape
    if want is None or want == shape:
        return
    if len(want) != len(shape) or any(w is not None and w != s for w, s in zip(want, shape)):
        shown = "(" + ", ".join("?" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "") + ")"
        raise ValueError(f"Cannot feed value of shape {shape} for Tensor {t.name!r}, which has shape {shown!r}")


# -- placeholders ------------------------------------------------------------------------
class Placeholder(Tensor):
    """A value supplied at run time through ``feed_dict``."""

    _base_name = "Placeholder"

    def __init__(self, dtype: Any, shape: Any = None, name: str | None = None, default: Tensor | None = None):
        if executing_eagerly():
            raise RuntimeError("tf.placeholder() is not compatible with eager execution")
        self.dtype = as_dtype(dtype)
        self.shape = _partial_shape(shape)
        self.default = default
        self._setup("PlaceholderWithDefault" if default is not None else "Placeholder", name)

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        if self.default is not None:
            return device.asarray(ctx.value(self.default, device), copy=True)
        shown = "<unknown>" if self._shape is None else "[" + ",".join(
            "?" if d is None else str(d) for d in self._shape) + "]"
        raise InvalidArgumentError(f"You must feed a value for placeholder tensor {self._op_name!r} with dtype "
                                   f"{self.dtype.name} and shape {shown}")

    def variables(self) -> list:
        return [] if self.default is None else self.default.variables()


def placeholder(dtype: Any, shape: Any = None, name: str | None = None) -> Placeholder:
    """A tensor fed at run time: ``x = tf.placeholder(tf.float32, [None, 784])``.

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> lr = tf.placeholder(tf.float32, [], name="lr")
    >>> with tf.Session() as sess:
    ...     float(sess.run(lr * 2.0, feed_dict={lr: 0.25}))
    0.5
    """
    return Placeholder(dtype, shape, name)


def placeholder_with_default(input: Any, shape: Any, name: str | None = None) -> Placeholder:
    """A placeholder that takes ``input``'s value when not fed."""
    default = convert_to_tensor(input)
    return Placeholder(default.dtype, shape, name, default=default)


def _partial_shape(shape: Any) -> tuple | None:
    """A shape that may have unknown dims (None) or unknown rank (None)."""
    if shape is None:
        return None
    if hasattr(shape, "as_list") and getattr(shape, "ndims", 0) is None:
        return None
    try:
        dims = list(shape)
    except TypeError:
        dims = [shape]
    out = []
    for d in dims:
        d = getattr(d, "value", d)
        if d is None or (isinstance(d, int) and not isinstance(d, bool) and d == -1):
            out.append(None)
            continue
        try:
            n = operator.index(d)
        except TypeError:
            raise InvalidArgumentError(f"shape: expected ints or None, received {shape!r}") from None
        if n < 0:
            raise InvalidArgumentError(f"shape: dimensions must be >= 0 or None, received {shape!r}")
        out.append(n)
    return tuple(out)


# -- elementwise and shape ops ----------------------------------------------------------------
_BINARY = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow,
    "maximum": None, "minimum": None, "squared_difference": None,
    "less": operator.lt, "less_equal": operator.le, "greater": operator.gt, "greater_equal": operator.ge,
    "equal": operator.eq, "not_equal": operator.ne,
}
_COMPARE = {"less", "less_equal", "greater", "greater_equal", "equal", "not_equal"}
_UNARY = {"neg", "abs", "square", "sqrt", "rsqrt", "exp", "log", "identity", "sign", "tanh", "sigmoid",
          "reciprocal", "floor", "ceil", "round", "relu", "logical_not"}
_REDUCE = {"reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"}


def _run_op(kind: str, xp: Any, args: list, attrs: dict) -> Any:
    if kind in _BINARY:
        a, b = args
        if kind == "maximum":
            return xp.maximum(a, b)
        if kind == "minimum":
            return xp.minimum(a, b)
        if kind == "squared_difference":
            return (a - b) * (a - b)
        if kind == "truediv" and attrs.get("as_float") is not None:
            return a.astype(attrs["as_float"]) / b.astype(attrs["as_float"])
        return _BINARY[kind](a, b)
    (x, *rest) = args
    if kind == "identity":
        return xp.array(x, copy=True)
    if kind == "neg":
        return -x
    if kind == "abs":
        return xp.abs(x)
    if kind == "square":
        return x * x
    if kind == "rsqrt":
        return 1 / xp.sqrt(x)
    if kind == "reciprocal":
        return 1 / x
    if kind == "sigmoid":
        return 1 / (1 + xp.exp(-x))
    if kind == "relu":
        return xp.maximum(x, 0)
    if kind == "round":
        return xp.rint(x)
    if kind in ("sqrt", "exp", "log", "sign", "tanh", "floor", "ceil", "logical_not"):
        return getattr(xp, kind)(x)
    if kind == "cast":
        return x.astype(attrs["dtype"])
    if kind == "reshape":
        return xp.reshape(x, attrs["shape"])
    if kind in _REDUCE:
        fn = {"reduce_sum": xp.sum, "reduce_mean": xp.mean, "reduce_max": xp.max, "reduce_min": xp.min,
              "reduce_prod": xp.prod}[kind]
        return fn(x, axis=attrs["axis"], keepdims=attrs["keepdims"])
    if kind == "matmul":
        a, b = x, rest[0]
        if attrs["transpose_a"]:
            a = xp.swapaxes(a, -1, -2)
        if attrs["transpose_b"]:
            b = xp.swapaxes(b, -1, -2)
        return a @ b
    if kind == "getitem":
        return x[attrs["key"]]
    if kind == "concat":
        return xp.concatenate(args, axis=attrs["axis"])
    if kind == "stack":
        return xp.stack(args, axis=attrs["axis"])
    if kind == "transpose":
        return xp.transpose(x, attrs["perm"])
    if kind == "gather":
        return xp.take(x, rest[0], axis=attrs["axis"])
    if kind == "add_n":
        out = xp.array(x, copy=True)
        for y in rest:
            out += y
        return out
    if kind in ("zeros_like", "ones_like"):
        return (xp.zeros_like if kind == "zeros_like" else xp.ones_like)(x, dtype=attrs["dtype"])
    if kind == "densify":  # IndexedSlices -> dense: rows summed where indices repeat
        out = xp.zeros(attrs["shape"], x.dtype)
        if hasattr(xp.add, "at"):
            xp.add.at(out, rest[0], x)
        else:  # cupy
            import cupyx  # noqa: PLC0415 - only on a GPU
            cupyx.scatter_add(out, rest[0], x)
        return out
    raise InvalidArgumentError(f"unknown operation {kind!r}")


class Apply(Tensor):
    """``kind`` applied to input tensors (elementwise, reductions, matmul, reshape, cast...).

    Shape and dtype are worked out when built (unknown dims stay None), so a
    mistake fails where it is written, not when the session runs.
    """

    def __init__(self, kind: str, inputs: list, name: str | None = None, **attrs: Any):
        self.kind, self.inputs, self.attrs = kind, list(inputs), attrs
        self.graph = get_default_graph()
        if not executing_eagerly():  # eager: computed at once, in this scope anyway
            self._scope = devices.current_device()
        self.shape, self.dtype = _infer(kind, self.inputs, attrs)
        self._base_name = _TF_NAMES.get(kind, kind)
        if (name is not None or current_control_inputs()) and not executing_eagerly():
            self._setup(self._base_name, name)

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        args = [ctx.value(x, device) for x in self.inputs]
        out = _run_op(self.kind, device.xp, args, self.attrs)
        out = device.xp.asarray(out)
        if out.dtype != self._dtype:
            out = out.astype(self._dtype)
        return out

    def dependencies(self) -> list:
        return [v for x in self.inputs for v in x.dependencies()]

    def variables(self) -> list:
        return [v for x in self.inputs for v in x.variables()]

    def describe(self) -> dict | None:
        parts = [x.describe() for x in self.inputs]
        if any(p is None for p in parts):
            return None
        if self.kind in ("add", "sub", "mul", "truediv") and not self.attrs:
            return {"kind": "binary", "op": self.kind, "a": parts[0], "b": parts[1]}  # the older spelling
        if self.kind == "neg":
            return {"kind": "negate", "x": parts[0]}
        attrs = {k: (v.name if isinstance(v, np.dtype) else list(v) if isinstance(v, tuple) else v)
                 for k, v in self.attrs.items() if k != "key"}
        if "key" in self.attrs:
            return None
        return {"kind": "apply", "op": self.kind, "inputs": parts, "attrs": attrs}


_TF_NAMES = {"add": "add", "sub": "sub", "mul": "mul", "truediv": "truediv", "neg": "Neg", "abs": "Abs",
             "identity": "Identity", "cast": "Cast", "reshape": "Reshape", "matmul": "MatMul",
             "square": "Square", "sqrt": "Sqrt", "exp": "Exp", "log": "Log", "maximum": "Maximum",
             "minimum": "Minimum", "reduce_sum": "Sum", "reduce_mean": "Mean", "reduce_max": "Max",
             "reduce_min": "Min", "reduce_prod": "Prod", "pow": "pow", "getitem": "strided_slice",
             "concat": "concat", "stack": "stack", "transpose": "transpose"}


def _broadcast(a: tuple | None, b: tuple | None, what: str) -> tuple | None:
    if a is None or b is None:
        return None
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == 1:
            out.append(y)
        elif y == 1 or y == x:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
            raise InvalidArgumentError(f"{what}: shapes {a} and {b} are not compatible")
    return tuple(out)


def _float_for(dtype: np.dtype) -> np.dtype:
    # TF's truediv of integers: small ints to float32, int32/int64 to float64.
    return np.dtype(np.float32) if dtype.itemsize <= 2 else np.dtype(np.float64)


def _infer(kind: str, inputs: list, attrs: dict) -> tuple:
    x = inputs[0]
    if kind in _BINARY:
        a, b = inputs
        if a.dtype != b.dtype:
            raise InvalidTypeError(f"{kind}: dtypes differ ({a.dtype.name} vs {b.dtype.name}); "
                                   f"cast one first (tf.cast)")
        shape = _broadcast(a._shape, b._shape, kind)
        if kind in _COMPARE:
            return shape, np.dtype(bool)
        if kind == "truediv" and a.dtype.kind in "iub":
            attrs["as_float"] = _float_for(a.dtype)
            return shape, attrs["as_float"]
        return shape, a.dtype
    if kind in _UNARY:
        return x._shape, x.dtype
    if kind == "cast":
        return x._shape, attrs["dtype"]
    if kind == "reshape":
        return _reshape(x._shape, attrs["shape"]), x.dtype
    if kind in _REDUCE:
        axis, keep = attrs["axis"], attrs["keepdims"]
        dtype = x.dtype
        if x._shape is None:
            return None, dtype
        nd = len(x._shape)
        axes = range(nd) if axis is None else [a % nd if nd else a for a in (axis if isinstance(axis, tuple) else (axis,))]
        for a in (axis if isinstance(axis, tuple) else () if axis is None else (axis,)):
            if not -max(nd, 1) <= a < max(nd, 1):
                raise InvalidArgumentError(f"{kind}: axis {a} is out of range for a tensor of rank {nd}")
        axes = set(axes)
        if keep:
            return tuple(1 if i in axes else d for i, d in enumerate(x._shape)), dtype
        return tuple(d for i, d in enumerate(x._shape) if i not in axes), dtype
    if kind == "matmul":
        a, b = inputs
        if a.dtype != b.dtype:
            raise InvalidTypeError(f"matmul: dtypes differ ({a.dtype.name} vs {b.dtype.name})")
        if a._shape is None or b._shape is None:
            return None, a.dtype
        sa, sb = list(a._shape), list(b._shape)
        if len(sa) < 2 or len(sb) < 2:
            raise InvalidArgumentError(f"matmul: both operands need rank >= 2, received shapes {a._shape} and {b._shape}")
        if attrs["transpose_a"]:
            sa[-1], sa[-2] = sa[-2], sa[-1]
        if attrs["transpose_b"]:
            sb[-1], sb[-2] = sb[-2], sb[-1]
        if sa[-1] is not None and sb[-2] is not None and sa[-1] != sb[-2]:
            raise InvalidArgumentError(f"matmul: inner dimensions differ: {tuple(sa)} @ {tuple(sb)}")
        batch = _broadcast(tuple(sa[:-2]), tuple(sb[:-2]), "matmul")
        return tuple(batch) + (sa[-2], sb[-1]), a.dtype
    if kind == "getitem":
        if x._shape is None or any(d is None for d in x._shape):
            return None, x.dtype
        return np.empty(x._shape, np.bool_)[attrs["key"]].shape, x.dtype
    if kind in ("concat", "stack"):
        dtypes = {t.dtype for t in inputs}
        if len(dtypes) != 1:
            raise InvalidArgumentError(f"{kind}: every input needs the same dtype, received {sorted(d.name for d in dtypes)}")
        if any(t._shape is None or None in t._shape for t in inputs):
            return None, x.dtype
        probe = [np.empty(t._shape, np.bool_) for t in inputs]
        try:
            shape = (np.concatenate if kind == "concat" else np.stack)(probe, axis=attrs["axis"]).shape
        except (ValueError, np.exceptions.AxisError) as e:
            raise InvalidArgumentError(f"{kind}: {e}") from None
        return shape, x.dtype
    if kind == "gather":
        idx = inputs[1]
        if idx.dtype.kind not in "iu":
            raise InvalidTypeError(f"gather: indices must be integers, received {idx.dtype.name}")
        if x._shape is None or idx._shape is None:
            return None, x.dtype
        ax = attrs["axis"] % max(len(x._shape), 1)
        return tuple(x._shape[:ax]) + tuple(idx._shape) + tuple(x._shape[ax + 1:]), x.dtype
    if kind == "add_n":
        for t in inputs[1:]:
            if t.dtype != x.dtype:
                raise InvalidTypeError(f"add_n: every input needs dtype {x.dtype.name}, received {t.dtype.name}")
        shape = x._shape
        for t in inputs[1:]:
            shape = _broadcast(shape, t._shape, "add_n")
        return shape, x.dtype
    if kind in ("zeros_like", "ones_like"):
        return x._shape, attrs["dtype"]
    if kind == "densify":
        return attrs["shape"], x.dtype
    if kind == "transpose":
        if x._shape is None:
            return None, x.dtype
        perm = attrs["perm"] if attrs["perm"] is not None else tuple(reversed(range(len(x._shape))))
        attrs["perm"] = tuple(perm)
        return tuple(x._shape[p] for p in perm), x.dtype
    raise InvalidArgumentError(f"unknown operation {kind!r}")


def _reshape(src: tuple | None, shape: Any) -> tuple:
    dims = [operator.index(getattr(d, "value", d)) for d in (list(shape) if not isinstance(shape, int) else [shape])]
    if dims.count(-1) > 1:
        raise InvalidArgumentError(f"reshape: at most one -1 in {dims}")
    if src is not None and None not in src:
        total = math.prod(src)
        known = math.prod(d for d in dims if d != -1)
        if -1 in dims:
            if known == 0 or total % known:
                raise InvalidArgumentError(f"reshape: cannot reshape {src} into {dims}")
            dims[dims.index(-1)] = total // known
        elif known != total:
            raise InvalidArgumentError(f"reshape: cannot reshape a tensor of {total} elements {src} into {tuple(dims)}")
        return tuple(dims)
    return tuple(None if d == -1 else d for d in dims)


def _check_key(key: Any) -> Any:
    items = key if isinstance(key, tuple) else (key,)
    for k in items:
        if not (k is Ellipsis or k is None or isinstance(k, (int, slice, np.integer))):
            raise InvalidArgumentError(f"tensor indexing takes ints, slices, ... and None, received {k!r}")
    return key


# -- conversion ---------------------------------------------------------------------------
def convert_to_tensor(value: Any, dtype: Any = None, name: str | None = None) -> Tensor:
    """``value`` as a tensor: tensors as they are, variables as reads, anything else as a constant.

    >>> convert_to_tensor([1.0, 2.0]).dtype.name
    'float32'
    """
    from .initializers import Constant, VariableValue
    from .variables import Variable
    if isinstance(value, Tensor):
        if dtype is not None and as_dtype(dtype) != value.dtype:
            raise InvalidTypeError(f"Tensor conversion requested dtype {as_dtype(dtype).name} for "
                                       f"{value.name} of dtype {value.dtype.name}")
        return value
    if isinstance(value, Variable):
        t = VariableValue(value, initialize=False)
        if dtype is not None and as_dtype(dtype) != t.dtype:
            raise InvalidTypeError(f"Tensor conversion requested dtype {as_dtype(dtype).name} for variable "
                                       f"{value.name} of dtype {t.dtype.name}")
        return t
    if isinstance(value, (list, tuple)) and any(isinstance(x, (Tensor, Variable)) for x in value):
        return stack(list(value))
    if isinstance(value, IndexedSlices):
        return value._dense()
    if hasattr(value, "as_tensor") and hasattr(value, "get_variable_list"):  # a PartitionedVariable
        return value.as_tensor()
    return Constant(value, dtype)


def binary(op: str, a: Any, b: Any, name: str | None = None) -> Tensor:
    """``a op b`` as a tensor (Python numbers take the other side's dtype)."""
    if not isinstance(a, Tensor):
        b = convert_to_tensor(b)
        a = convert_to_tensor(a, b.dtype if _is_pylit(a) else None)
    else:
        b = convert_to_tensor(b, a.dtype if _is_pylit(b) else None)
    return _new(op, [a, b], name)


def _is_pylit(x: Any) -> bool:
    return isinstance(x, (int, float, bool, complex, list)) and not isinstance(x, np.ndarray)


def _unary(kind: str):
    def f(x: Any, name: str | None = None) -> Tensor:
        return _new(kind, [convert_to_tensor(x)], name)
    f.__name__ = kind
    f.__doc__ = f"``{kind}(x)`` elementwise, as a tensor."
    return f


def _binary_fn(kind: str):
    def f(x: Any, y: Any, name: str | None = None) -> Tensor:
        return binary(kind, x, y, name)
    f.__name__ = kind
    f.__doc__ = f"``{kind}(x, y)`` elementwise (broadcasting), as a tensor."
    return f


identity, square, sqrt, rsqrt, exp, log, abs, negative, sign, tanh, sigmoid, reciprocal, floor, ceil, round = (
    _unary(k) for k in ("identity", "square", "sqrt", "rsqrt", "exp", "log", "abs", "neg", "sign", "tanh",
                        "sigmoid", "reciprocal", "floor", "ceil", "round"))
add, subtract, multiply, divide, truediv, floordiv, mod, pow, maximum, minimum, squared_difference = (
    _binary_fn(k) for k in ("add", "sub", "mul", "truediv", "truediv", "floordiv", "mod", "pow", "maximum",
                            "minimum", "squared_difference"))
less, less_equal, greater, greater_equal, equal, not_equal = (
    _binary_fn(k) for k in ("less", "less_equal", "greater", "greater_equal", "equal", "not_equal"))


def cast(x: Any, dtype: Any, name: str | None = None) -> Tensor:
    """``x`` converted to ``dtype`` (floats to ints truncate toward zero, as in TF)."""
    return _new("cast", [convert_to_tensor(x)], name, dtype=as_dtype(dtype))


def to_float(x: Any, name: str | None = None) -> Tensor:
    return cast(x, np.float32, name)


def reshape(tensor: Any, shape: Any, name: str | None = None) -> Tensor:
    """``tensor`` with a new shape of the same size (one dim may be -1)."""
    return _new("reshape", [convert_to_tensor(tensor)], name, shape=tuple(shape) if not isinstance(shape, int)
                 else (shape,))


def _reduction(kind: str):
    def f(input_tensor: Any, axis: Any = None, keepdims: bool | None = None, name: str | None = None,
          reduction_indices: Any = None, keep_dims: bool | None = None) -> Tensor:
        ax = axis if axis is not None else reduction_indices
        if isinstance(ax, (list, tuple)):
            ax = tuple(operator.index(a) for a in ax)
        elif ax is not None:
            ax = operator.index(ax)
        keep = bool(keepdims if keepdims is not None else keep_dims or False)
        return _new(kind, [convert_to_tensor(input_tensor)], name, axis=ax, keepdims=keep)
    f.__name__ = kind
    f.__doc__ = f"``{kind}`` over ``axis`` (all axes by default), as a tensor."
    return f


reduce_sum, reduce_mean, reduce_max, reduce_min, reduce_prod = (
    _reduction(k) for k in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"))


def matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False, name: str | None = None) -> Tensor:
    """The matrix product ``a @ b``, as a tensor."""
    if not isinstance(a, Tensor) and isinstance(b, Tensor):
        a = convert_to_tensor(a, b.dtype if not hasattr(a, "dtype") else None)
    a = convert_to_tensor(a)
    b = convert_to_tensor(b, a.dtype if not hasattr(b, "dtype") else None)
    return _new("matmul", [a, b], name, transpose_a=bool(transpose_a), transpose_b=bool(transpose_b))


def gather(params: Any, indices: Any, axis: int = 0, name: str | None = None, validate_indices: Any = None,
           batch_dims: int = 0) -> Tensor:
    """Rows (slices along ``axis``) ``indices`` of ``params``, as a tensor."""
    return _new("gather", [convert_to_tensor(params), convert_to_tensor(indices)], name, axis=operator.index(axis))


def add_n(inputs: list, name: str | None = None) -> Tensor:
    """The elementwise sum of the tensors in ``inputs``."""
    if not inputs:
        raise ValueError("inputs must be a list of at least one Tensor with the same dtype and shape")
    first = convert_to_tensor(inputs[0])
    return _new("add_n", [first] + [convert_to_tensor(x, first.dtype if _is_pylit(x) else None) for x in inputs[1:]],
                name)


def zeros_like(tensor: Any, dtype: Any = None, name: str | None = None) -> Tensor:
    """Zeros of ``tensor``'s shape (and dtype unless given)."""
    t = convert_to_tensor(tensor)
    return _new("zeros_like", [t], name, dtype=as_dtype(dtype) if dtype is not None else t.dtype)


def ones_like(tensor: Any, dtype: Any = None, name: str | None = None) -> Tensor:
    """Ones of ``tensor``'s shape (and dtype unless given)."""
    t = convert_to_tensor(tensor)
    return _new("ones_like", [t], name, dtype=as_dtype(dtype) if dtype is not None else t.dtype)


def concat(values: list, axis: int, name: str = "concat") -> Tensor:
    """The tensors in ``values`` joined along ``axis``."""
    return _new("concat", [convert_to_tensor(v) for v in values], name if name != "concat" else None,
                 axis=operator.index(axis))


def stack(values: list, axis: int = 0, name: str = "stack") -> Tensor:
    """The tensors in ``values`` stacked along a new ``axis``."""
    return _new("stack", [convert_to_tensor(v) for v in values], name if name != "stack" else None,
                 axis=operator.index(axis))


def transpose(a: Any, perm: Any = None, name: str = "transpose") -> Tensor:
    """``a`` with its axes permuted (reversed by default)."""
    return _new("transpose", [convert_to_tensor(a)], name if name != "transpose" else None,
                 perm=None if perm is None else tuple(perm))


def _new(kind: str, inputs: list, name: str | None = None, **attrs: Any) -> Tensor:
    """An op's tensor; in eager mode, its value computed now (an EagerTensor)."""
    node = Apply(kind, inputs, name, **attrs)
    return now(node) if executing_eagerly() else node


def now(node: Tensor) -> EagerTensor:
    """``node`` computed now, on its home device, as an EagerTensor."""
    dev = node._home_device()
    return EagerTensor(RunContext().value(node, dev), dev)


class EagerTensor(Tensor):
    """A value computed in eager mode: ``numpy()``, ``np.asarray(t)``; ops on it compute at once.

    >>> import varstore as tf
    >>> with tf.eager_mode():
    ...     t = tf.constant([1.0, 2.0]) * 2.0
    ...     t.numpy().tolist()
    [2.0, 4.0]
    """

    _base_name = "EagerTensor"

    def __init__(self, array: Any, device: Any):
        self._array, self._device = array, device
        self.shape, self.dtype = tuple(array.shape), np.dtype(array.dtype)

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        out = self._array if device is self._device else device.asarray(self._array)
        if out is self._array:
            ctx.adopt(out)  # ours: whoever keeps it takes a copy
        return out

    def _home_device(self) -> Any:
        return self._device

    def numpy(self) -> np.ndarray:
        host = devices.to_host(self._array)
        return host.copy() if host is self._array else host

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    def __bool__(self) -> bool:
        return bool(self.numpy())

    def __float__(self) -> float:
        return float(self.numpy())

    def __int__(self) -> int:
        return int(self.numpy())

    def __index__(self) -> int:
        return int(self.numpy())

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"<varstore.EagerTensor: shape={self.shape}, dtype={self.dtype.name}, numpy={self.numpy()!r}>"


class IndexedSlices:
    """A sparse value: ``values[i]`` belongs to row ``indices[i]`` of a tensor of ``dense_shape``.

    Its parts may be arrays or tensors (placeholders fed per step).

    >>> g = IndexedSlices(np.ones((2, 4)), np.array([0, 0]), dense_shape=(10, 4))
    """

    def __init__(self, values: Any, indices: Any, dense_shape: Any = None):
        self.values, self.indices, self.dense_shape = values, indices, dense_shape

    @property
    def dtype(self) -> Any:
        return getattr(self.values, "dtype", None)

    def _dense(self) -> Tensor:
        """The dense tensor (rows summed where indices repeat): ``tf.convert_to_tensor(slices)``."""
        if self.dense_shape is None:
            raise ValueError("Cannot convert IndexedSlices without a dense_shape to a Tensor")
        shape = self.dense_shape
        if isinstance(shape, Tensor):  # a constant shape tensor: its value is known now
            arr = getattr(shape, "array", None)
            if arr is None:
                raise ValueError("Cannot convert IndexedSlices whose dense_shape is computed at run time")
            shape = arr
        shape = tuple(int(d) for d in np.asarray(shape).reshape(-1))
        values = convert_to_tensor(self.values)
        return _new("densify", [values, convert_to_tensor(self.indices)], None, shape=shape)

    def __repr__(self) -> str:
        return f"IndexedSlices(indices={self.indices!r}, values={self.values!r}, dense_shape={self.dense_shape!r})"
