"""Variable: a named buffer on one device, initialized by a deferred value.

Every op that changes a variable (assign*, load, optimizer updates,
restore) runs on the variable's own device, whatever device scope
surrounds the call: values from elsewhere are moved there first.

In graph mode (the default) ``assign*`` build an op that applies once each
time a session runs it; in eager mode they apply at once.

>>> import varstore as tf
>>> tf.reset_default_graph()
>>> v = tf.Variable(tf.zeros([3]), name="v")
>>> add = v.assign_add([1.0, 2.0, 3.0])
>>> with tf.Session() as sess:
...     sess.run(v.initializer)
...     sess.run(add).tolist(), sess.run(add).tolist()
([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

import devices
from devices.backends.arrays import host_array
from devices.dtypes import DType, as_dtype, is_bfloat16
from devices.errors import InvalidArgumentError, InvalidTypeError
from devices.scope import OpDescription
from devices.shapes import TensorShape

from . import initializers as _init
from .graph import Graph, GraphKeys, get_default_graph
from .ops import Operation, RunContext, control_dependencies, executing_eagerly
from .storage import Storage
from .tensors import EagerTensor, IndexedSlices, Tensor, convert_to_tensor, now

log = logging.getLogger("varstore")


class _OpInfo:
    """``v.op``: what TF code reads off a variable's op (name, type, device, graph)."""

    type = "VariableV2"

    def __init__(self, var: Variable):
        self._var = var

    @property
    def name(self) -> str:
        return self._var._name

    @property
    def device(self) -> str:
        return self._var.device

    @property
    def graph(self) -> Graph:
        return self._var.graph

    @property
    def outputs(self) -> list:
        return [self._var]

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _OpInfo) and other._var is self._var

    def __hash__(self) -> int:
        return id(self._var)

    def __repr__(self) -> str:
        return f"<varstore.Operation '{self._var._name}' type=VariableV2>"


class Variable:
    """A variable. ``tf.Variable(tf.random_normal([784, 200], stddev=0.35), name="weights")``

    ``initial_value`` may be a deferred value (``tf.zeros``, ``tf.random_normal``,
    ``w.initialized_value() * 2``), a Python scalar or list, a numpy or cupy
    array, another Variable, or a function returning one of these.
    """

    def __init__(self, initial_value: Any = None, trainable: bool = True, collections: Iterable[str] | None = None,
                 validate_shape: bool = True, name: str | None = None, dtype: Any = None,
                 shape: Any = None, *, graph: Graph | None = None):
        if initial_value is None:
            raise InvalidArgumentError("Variable: initial_value must be given (e.g. tf.zeros([3]))")
        self.graph = graph or get_default_graph()
        self._initial = _init.as_initial_value(initial_value, dtype)
        shape0 = self._initial.shape
        if shape is not None:
            from devices.shapes import as_shape
            if validate_shape and as_shape(shape) != shape0:
                raise InvalidArgumentError(
                    f"Variable: shape={as_shape(shape)} does not match the initial value's shape {shape0}")
        self._dtype = self._initial._dtype  # numpy's dtype: what the arrays and kernels use
        # The op name ("scope/v"): checkpoint keys, meta graphs and messages use it; ``name``
        # adds TF's output index (":0").
        self._name = self.graph.unique_name(name or "Variable")
        # The value, its lock and its shape: the surface the Saver, optimizers and ps tier use.
        self.storage = Storage(self._name, shape0)
        self.trainable = bool(trainable)
        self.validate_shape = bool(validate_shape)
        self._requested = devices.resolve(OpDescription("VariableV2", self._name, shape0, self._dtype))
        self._device = devices.get_device(self._requested)
        with control_dependencies(None):  # as TF's init_scope: an initializer waits for nothing
            self.initializer = Operation(f"{self._name}/Assign", lambda ctx: _run_initializers([self], ctx),
                                         type="Assign", graph=self.graph, exact_name=True)
        cols = set(collections) if collections is not None else {GraphKeys.GLOBAL_VARIABLES}
        if self.trainable:
            cols.add(GraphKeys.TRAINABLE_VARIABLES)
        self.graph.add_to_collections(cols, self)
        # (primary variable's name, slot name) when this is an optimizer slot: set by the
        # optimizer that creates it, written to and read from meta graphs.
        self.slot_of: tuple[str, str] | None = None
        _register(self)
        if executing_eagerly():  # eager: a variable holds its value from the start
            _run_initializers([self])

    @property
    def name(self) -> str:
        """TF's tensor name, ``"scope/v:0"``; ``v.op.name`` is ``"scope/v"`` (the checkpoint key)."""
        return self._name + ":0"

    # -- properties ---------------------------------------------------------
    @property
    def shape(self) -> TensorShape:
        """TF's TensorShape (``as_list()``, ``ndims``, ``v.shape[0]``); a tuple of ints too."""
        return TensorShape(self.storage.shape)

    def get_shape(self) -> TensorShape:
        return TensorShape(self.storage.shape)

    @property
    def dtype(self) -> DType:
        """TF's DType (``name``, ``base_dtype``...); numpy takes it wherever it takes a dtype."""
        return as_dtype(self._dtype)

    @property
    def device(self) -> str:
        """Canonical string of where the variable lives."""
        return self._device.name

    @property
    def requested_device(self) -> str:
        """What the scopes and device functions asked for (differs from ``device`` only under soft placement)."""
        return self._requested.to_string()

    @property
    def device_object(self) -> devices.Device:
        return self._device

    @property
    def op(self) -> _OpInfo:
        return _OpInfo(self)

    @property
    def initial_value(self) -> Tensor:
        """The tensor this variable's initializer evaluates (graph mode only, as in TF)."""
        if executing_eagerly():
            raise RuntimeError("initial_value not supported in EAGER mode.")
        return self._initial

    def initialized_value(self) -> _init.InitialValue:
        """This variable's value, its initializer run first when due: use it to initialize another.

        ``w2 = tf.Variable(weights.initialized_value() * 2.0, name="w2")``
        """
        if executing_eagerly():
            raise NotImplementedError("initialized_value not supported in EAGER mode: a variable's value "
                                      "is there from creation; use the variable itself")
        return _init.VariableValue(self, initialize=True)

    @property
    def is_initialized(self) -> bool:
        return self.storage.array is not None

    # -- reading --------------------------------------------------------------

    def value(self) -> Any:
        """The live array on the variable's device (no copy: later assigns show through).

        For a variable on a ps task this is a read-only host copy fetched from the task. In
        graph mode, before the variable is initialized, a read tensor (as TF's ``value()``),
        so ``val = v.value()`` written while building the graph runs later.
        """
        if self.storage.array is None and not executing_eagerly():
            return _init.VariableValue(self, initialize=False)
        return self._live()

    def _live(self) -> Any:
        """The live array (FailedPreconditionError naming the variable if uninitialized)."""
        return self._device.read(self.storage.require())

    def read_value(self) -> Any:
        """The value as a tensor read when run (graph mode; inside ``control_dependencies`` it
        reads after them). Eager mode: a snapshot copy on the variable's device, consistent
        even while other threads assign."""
        if not executing_eagerly():
            return _init.VariableValue(self, initialize=False)._setup(f"{self._name}/read")
        with self.storage.lock:
            return EagerTensor(self._device.asarray(self.storage.require(), copy=True), self._device)

    def numpy(self) -> np.ndarray:
        """A host (numpy) copy, consistent even while other threads assign."""
        with self.storage.lock:
            value = self.storage.require()
            out = np.empty(value.shape, value.dtype) if not isinstance(value, np.ndarray) else None
            return self._device.to_host(value, out) if out is not None else value.copy()

    def eval(self, session: Any = None) -> np.ndarray:
        """The value as a host array (TF's ``v.eval()``)."""
        return self.numpy()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(v)``: the variable's own host buffer, shared (no copy) where it can be.

        - A CPU variable: ``np.asarray(v)`` (and ``copy=False``) is the live buffer,
          exactly ``v.value()``: later assigns show through it and writes into it
          change the variable. It is not a snapshot, and it takes no lock: read while
          another thread assigns, it may mix old and new values. For a consistent copy
          use ``np.array(v)`` (``copy=True``, taken under the variable's lock),
          ``v.numpy()`` or ``sess.run(v)``. An assign that changes the shape
          (``validate_shape=False``) replaces the buffer; views taken before keep the old one.
        - A GPU variable: numpy cannot share device memory, so ``np.asarray(v)`` is a
          consistent host copy and ``copy=False`` raises ValueError (use
          ``cupy.asarray(v)`` or DLPack to share).
        - A ps variable: a read-only host copy fetched from its task.
        - ``dtype`` other than the variable's: a converted copy (ValueError with ``copy=False``).

        >>> import numpy as np, varstore as tf
        >>> v = tf.Variable([1.0, 2.0], name="shared")
        >>> v.initializer.run()
        >>> a = np.asarray(v)          # shares memory
        >>> v.load([3.0, 4.0])
        >>> a.tolist(), np.shares_memory(a, v.value()), np.shares_memory(np.array(v), a)
        ([3.0, 4.0], True, False)
        """
        if copy:
            with self.storage.lock:
                host = self.numpy()
            return host if dtype is None or host.dtype == np.dtype(dtype) else host.astype(dtype)
        live = self._live()
        if isinstance(live, np.ndarray):
            if dtype is None or np.dtype(dtype) == live.dtype:
                return live
            if copy is False:
                raise ValueError(f"np.asarray({self.name}, dtype={np.dtype(dtype)}, copy=False): "
                                 f"the variable holds {live.dtype}; a different dtype needs a copy")
            with self.storage.lock:
                return self.storage.require().astype(dtype)
        if copy is False:
            raise ValueError(f"np.asarray({self.name}, copy=False): the variable lives on {self.device}; "
                             f"numpy cannot share its memory (use cupy.asarray(v) or DLPack)")
        host = self.numpy()
        return host if dtype is None else host.astype(dtype, copy=False)

    def __dlpack__(self, **kwargs: Any) -> Any:
        """DLPack export of the live buffer, no copy: ``torch.from_dlpack(v)``, ``cupy.from_dlpack(v)``.

        bfloat16 works on the host too (numpy alone cannot export it). Like
        ``np.asarray(v)`` this shares memory and takes no lock.
        """
        value = self._live()
        if isinstance(value, np.ndarray) and is_bfloat16(value.dtype):
            from devices.backends.dlpack import bfloat16_capsule
            return bfloat16_capsule(value, **kwargs)
        return value.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._live().__dlpack_device__()

    @property
    def __cuda_array_interface__(self) -> dict:
        """The GPU buffer's interface (``cupy.asarray(v)`` shares it); absent on other devices."""
        if self._device.kind != "gpu":
            # AttributeError, so hasattr(v, "__cuda_array_interface__") is False, initialized or not.
            raise AttributeError(f"variable {self.name} lives on {self.device}, not on a GPU: "
                                 f"it has no __cuda_array_interface__")
        return self._live().__cuda_array_interface__

    # -- writing (always on the variable's device) ----------------------------
    def _converted(self, value: Any) -> Any:
        """``value`` on this variable's device with its dtype, shape checked."""
        if isinstance(value, Variable):
            value = value._live()
        elif isinstance(value, _init.InitialValue):
            value = self._device.evaluate(value, RunContext())
        elif ((hasattr(value, "dtype") or hasattr(value, "__dlpack__"))
              and not isinstance(value, (np.ndarray, np.generic))
              and not isinstance(getattr(value, "dtype", None), np.dtype)):
            # Another library's array (a torch tensor): its dtype is not a numpy dtype, so
            # view it as numpy (host, through __array__ or DLPack: no copy, bfloat16 included)
            # or as a device array of this variable's GPU (zero-copy) first.
            if hasattr(value, "__cuda_array_interface__") and self._device.kind == "gpu":
                value = self._device.asarray(value)
            else:
                value = host_array(value)
        src_dtype = getattr(value, "dtype", None)
        if src_dtype is not None and not isinstance(value, (np.generic,)):
            _init._check_cast(src_dtype, self._dtype, f"assign to {self.name}", values=value)
            arr = value
        else:
            arr = _init._exact_array(_init._to_numpy(value), self._dtype, f"assign to {self.name}")
        shape = tuple(getattr(arr, "shape", ()))
        if shape != self.storage.shape and self.validate_shape:
            raise InvalidArgumentError(
                f"Assign to {self.name}: shape {shape} does not match the variable's shape {self.storage.shape}")
        return self._device.asarray(arr, dtype=self._dtype)

    def _store(self, new: Any, fresh: bool) -> None:
        """Write in place when a buffer of that shape exists, else keep ``new`` (on this device).

        ``fresh``: ``new`` was allocated for us and may be kept; otherwise it may be the
        caller's own array, and keeping it would alias their memory, so it is copied.
        """
        with self.storage.lock:
            if self.storage.array is not None and self.storage.array.shape == new.shape:
                self._device.copy_into(self.storage.array, new)
            else:
                self.storage.array = new if fresh else self._device.asarray(new, copy=True)
                self.storage.shape = tuple(new.shape)

    def assign(self, value: Any, use_locking: bool = False, name: Any = None, read_value: bool = True) -> Any:
        """Set the value, on the variable's device (``value`` from any device is moved there).

        Graph mode: an op (a tensor whose value is the new value) that applies each time it is
        run. Eager mode: applied now; returns the variable.
        """
        if executing_eagerly() and not isinstance(value, Tensor):
            self._assign_now(value)
            return self
        return _run_if_eager(Assign(self, "assign", value, name=name))

    def assign_add(self, delta: Any, use_locking: bool = False, name: Any = None, read_value: bool = True) -> Any:
        """``v += delta`` in place, on the variable's device (an op in graph mode)."""
        if executing_eagerly() and not isinstance(delta, Tensor):
            self._add_now(delta, 1)
            return self
        return _run_if_eager(Assign(self, "add", delta, name=name))

    def assign_sub(self, delta: Any, use_locking: bool = False, name: Any = None, read_value: bool = True) -> Any:
        """``v -= delta`` in place, on the variable's device (an op in graph mode)."""
        if executing_eagerly() and not isinstance(delta, Tensor):
            self._add_now(delta, -1)
            return self
        return _run_if_eager(Assign(self, "sub", delta, name=name))

    def scatter_update(self, sparse_delta: IndexedSlices, use_locking: bool = False, name: Any = None) -> Any:
        """``v[indices] = values`` for an IndexedSlices (an op in graph mode)."""
        return _run_if_eager(Scatter(self, "update", sparse_delta.indices, sparse_delta.values, name))

    def scatter_add(self, sparse_delta: IndexedSlices, use_locking: bool = False, name: Any = None) -> Any:
        """``v[indices] += values`` (repeated indices add up)."""
        return _run_if_eager(Scatter(self, "add", sparse_delta.indices, sparse_delta.values, name))

    def scatter_sub(self, sparse_delta: IndexedSlices, use_locking: bool = False, name: Any = None) -> Any:
        """``v[indices] -= values`` (repeated indices add up)."""
        return _run_if_eager(Scatter(self, "sub", sparse_delta.indices, sparse_delta.values, name))

    def load(self, value: Any, session: Any = None) -> None:
        """Set the value now, in both modes (TF 1.x's ``Variable.load``; no op is created)."""
        self._assign_now(value)

    # -- the mutations themselves (run by ops, or at once in eager mode) ----------------
    def _assign_now(self, value: Any) -> None:
        new = self._converted(value)
        if new is not self.storage.array:
            self._store(new, fresh=False)

    def _add_now(self, delta: Any, sign: int) -> None:
        d = self._converted(delta)
        with self.storage.lock:
            self._device.add_into(self.storage.require(), d, sign)

    def _scatter_now(self, mode: str, indices: Any, updates: Any) -> None:
        dev = self._device
        if dev.kind not in ("cpu", "gpu"):  # a ps task: read, update on the host, write back
            with self.storage.lock:
                host = self.numpy()
                _scatter_into(np, host, mode, np.asarray(devices.to_host(indices)), devices.to_host(updates),
                              self.name)
                self._assign_now(host)
            return
        idx = dev.asarray(indices)
        with self.storage.lock:
            arr = self.storage.require()
            upd = dev.asarray(updates, dtype=self._dtype)
            _scatter_into(dev.xp, arr, mode, idx, upd, self.name)

    # -- initialization -------------------------------------------------------
    def _initialize_in(self, ctx: RunContext) -> None:
        """Run this variable's initializer within one run, at most once, dependencies first."""
        key = id(self)
        if key in ctx.done:
            return
        if any(v is self for v in ctx.in_progress):
            names = [v._name for v in ctx.in_progress[[id(v) for v in ctx.in_progress].index(key):]] + [self._name]
            raise InvalidArgumentError(
                f"initialized_value() cycle: {' -> '.join(names)}")
        if key not in ctx.run_variables and self.is_initialized:
            ctx.done.add(key)  # initialized before this run: use its current value
            return
        ctx.in_progress.append(self)
        try:
            value = self._device.evaluate(self._initial, ctx)
        finally:
            ctx.in_progress.pop()
        if tuple(value.shape) != self.storage.shape and self.validate_shape:
            raise InvalidArgumentError(f"{self.name}: initial value has shape {tuple(value.shape)}, "
                                       f"expected {self.storage.shape}")
        self._store(value, fresh=ctx.adopt(value))  # keep the new array unless the run shares it
        ctx.done.add(key)
        if ctx.on_initialized is not None:
            ctx.on_initialized(self)

    # -- arithmetic builds tensors (in eager mode, computed at once) ------------------
    def _binary(op):
        def f(self, other):
            return getattr(convert_to_tensor(self), op)(other)
        f.__name__ = op
        return f

    __add__, __radd__, __sub__, __rsub__ = map(_binary, ("__add__", "__radd__", "__sub__", "__rsub__"))
    __mul__, __rmul__, __truediv__, __rtruediv__ = map(_binary, ("__mul__", "__rmul__", "__truediv__",
                                                                 "__rtruediv__"))
    __floordiv__, __rfloordiv__, __mod__, __rmod__ = map(_binary, ("__floordiv__", "__rfloordiv__", "__mod__",
                                                                   "__rmod__"))
    __pow__, __rpow__, __matmul__, __rmatmul__ = map(_binary, ("__pow__", "__rpow__", "__matmul__",
                                                               "__rmatmul__"))
    __lt__, __le__, __gt__, __ge__, __getitem__ = map(_binary, ("__lt__", "__le__", "__gt__", "__ge__",
                                                                "__getitem__"))
    del _binary

    def __iter__(self):
        # As TF: without this, Python would iterate through __getitem__ for ever.
        raise TypeError(f"'Variable' object is not iterable: iterate over sess.run({self._name}) or v.numpy()")

    def __neg__(self):
        return -convert_to_tensor(self)

    def __abs__(self):
        return abs(convert_to_tensor(self))

    __hash__ = object.__hash__  # variables are keys in dicts (Saver, optimizer slots)
    __array_priority__ = 100  # numpy defers to our reflected operators

    def __repr__(self) -> str:
        return (f"<varstore.Variable '{self.name}' shape={self.storage.shape} dtype={self._dtype.name} "
                f"device={self.device}{'' if self.is_initialized else ' uninitialized'}>")


def _is_readonly(a: Any) -> bool:
    flags = getattr(a, "flags", None)
    return flags is not None and not getattr(flags, "writeable", True)


def _run_initializers(var_list: list, ctx: RunContext | None = None) -> None:
    """Initialize ``var_list`` within the run ``ctx`` (a new one if None)."""
    ctx = ctx if ctx is not None else RunContext()
    ctx.run_variables.update(map(id, var_list))
    if ctx.on_initialized is None:
        log_placement = bool(getattr(ctx.session, "_log_device_placement", False))

        def placed(v: Variable) -> None:
            if log_placement:
                # TF prints placement to stderr; so do we, only when the user asked for it.
                sys.stderr.write(f"{v._name}: (VariableV2): {v.device}\n")
            log.debug("initialized %s on %s", v._name, v.device)

        ctx.on_initialized = placed
    for v in var_list:
        v._initialize_in(ctx)


def _register(var: Variable) -> None:
    from .ops import register
    register(var.graph, var._name, var)


def _run_if_eager(node: Any) -> Any:
    """Eager mode: run the op just built and return its variable (TF's eager ``assign`` does)."""
    if not executing_eagerly():
        return node
    ctx = RunContext()
    ctx.value(node, node._home_device())
    return node.var


def _compute_device(var: Variable) -> Any:
    """Where an op on ``var`` computes its operands: the variable's device, or the host
    for a device that only stores (a ps task: the result is shipped to it)."""
    dev = var.device_object
    return dev if dev.kind in ("cpu", "gpu") else devices.get_device(None)  # None: the host CPU, no parse


class Assign(Tensor):
    """``v.assign(x)`` / ``assign_add`` / ``assign_sub`` in graph mode: each run applies it once,
    on the variable's device; its value is the variable's new value."""

    _NAMES = {"assign": "Assign", "add": "AssignAdd", "sub": "AssignSub"}

    def __init__(self, var: Variable, mode: str, value: Any, name: str | None = None,
                 validate_shape: bool | None = None):
        self.var, self.mode = var, mode
        self.value = convert_to_tensor(value, None if isinstance(value, (Tensor, Variable)) else var.dtype)
        if self.value.dtype != var.dtype:
            raise InvalidTypeError(f"{self._NAMES[mode]} to {var._name}: value has dtype "
                                   f"{self.value.dtype.name}, the variable {var.dtype.name}")
        self.validate = var.validate_shape if validate_shape is None else bool(validate_shape)
        vs, have = self.value._shape, var.storage.shape
        if (self.validate or mode != "assign") and vs is not None and (
                len(vs) != len(have) or any(a is not None and a != b for a, b in zip(vs, have))):
            raise ValueError(f"Shapes {have} and {vs} are incompatible ({self._NAMES[mode]} to {var._name})")
        self.shape = have if self.validate or vs is None else vs
        self.dtype = var._dtype
        self._setup(self._NAMES[mode], name)

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        var = self.var
        value = ctx.value(self.value, _compute_device(var))
        if self.mode == "assign":
            if self.validate and tuple(value.shape) != var.storage.shape:
                raise InvalidArgumentError(f"Assign to {var._name}: shape {tuple(value.shape)} does not match "
                                           f"the variable's shape {var.storage.shape}")
            if self.validate:
                var._assign_now(value)
            else:
                var._store(var._device.asarray(value, dtype=var._dtype), fresh=ctx.adopt(value))
        else:
            var._add_now(value, 1 if self.mode == "add" else -1)
        out = var.storage.require()
        if device is not var.device_object or var.device_object.kind not in ("cpu", "gpu"):
            return device.asarray(var._device.read(out), copy=True)
        ctx.adopt(out)  # the live buffer: whoever keeps or fetches it takes a copy
        return out

    def _home_device(self) -> Any:
        return _compute_device(self.var)

    def variables(self) -> list:
        return [self.var] + self.value.variables()


class Scatter(Tensor):
    """``tf.scatter_update`` / ``scatter_add`` / ``scatter_sub``: rows of a variable, in place."""

    def __init__(self, var: Variable, mode: str, indices: Any, updates: Any, name: str | None = None):
        self.var, self.mode = var, mode
        self.indices = convert_to_tensor(indices)
        if self.indices.dtype.kind not in "iu":
            raise InvalidArgumentError(f"scatter_{mode} on {var._name}: indices must be integers, "
                                       f"received {self.indices.dtype.name}")
        self.updates = convert_to_tensor(updates, None if isinstance(updates, (Tensor, Variable)) else var.dtype)
        self.shape, self.dtype = var.storage.shape, var._dtype
        self._setup({"update": "ScatterUpdate", "add": "ScatterAdd", "sub": "ScatterSub"}[mode], name)

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        dev = _compute_device(self.var)
        self.var._scatter_now(self.mode, ctx.value(self.indices, dev), ctx.value(self.updates, dev))
        out = self.var.storage.require()
        if device is not self.var.device_object or self.var.device_object.kind not in ("cpu", "gpu"):
            return device.asarray(self.var._device.read(out), copy=True)
        ctx.adopt(out)
        return out

    def _home_device(self) -> Any:
        return _compute_device(self.var)

    def variables(self) -> list:
        return [self.var] + self.indices.variables() + self.updates.variables()


def _scatter_into(xp: Any, arr: Any, mode: str, idx: Any, upd: Any, name: str) -> None:
    n = arr.shape[0] if arr.ndim else 0
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise InvalidArgumentError(f"scatter_{mode} on {name}: indices must be in [0, {n}), received "
                                   f"{devices.to_host(idx).tolist()}")
    want = tuple(idx.shape) + tuple(arr.shape[1:])
    if tuple(upd.shape) != want and upd.ndim != 0:
        raise InvalidArgumentError(f"scatter_{mode} on {name}: updates have shape {tuple(upd.shape)}, "
                                   f"expected {want}")
    if mode == "update":
        arr[idx] = upd
        return
    if upd.ndim == 0:
        upd = xp.broadcast_to(upd, want)
    if hasattr(xp, "add") and hasattr(xp.add, "at"):
        xp.add.at(arr, idx, upd if mode == "add" else -upd)
    else:  # cupy: scatter_add lives in cupyx
        import cupyx  # noqa: PLC0415 - only on a GPU
        cupyx.scatter_add(arr, idx, upd if mode == "add" else -upd)


class _Computed(Tensor):
    """A value computed on the host when run (``is_variable_initialized`` and friends)."""

    def __init__(self, base: str, fn: Any, shape: tuple, dtype: Any):
        self._fn, self.shape, self.dtype = fn, shape, np.dtype(dtype)
        self._setup(base)

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        return self._fn()

    def _home_device(self) -> Any:
        return devices.get_device(None)


# -- module-level functions ---------------------------------------------------------
def global_variables(scope: str | None = None) -> list:
    """Variables in the default graph's global collection (all of them, unless filtered by ``scope``)."""
    return get_default_graph().get_collection(GraphKeys.GLOBAL_VARIABLES, scope)


def trainable_variables(scope: str | None = None) -> list:
    """Variables created with ``trainable=True``."""
    return get_default_graph().get_collection(GraphKeys.TRAINABLE_VARIABLES, scope)


def local_variables(scope: str | None = None) -> list:
    return get_default_graph().get_collection(GraphKeys.LOCAL_VARIABLES, scope)


def variables_initializer(var_list: Iterable[Variable], name: str = "init") -> Operation:
    """An op that initializes ``var_list`` (dependencies through initialized_value() first).

    >>> import varstore as tf
    >>> v = tf.Variable(1.0, name="x")
    >>> tf.variables_initializer([v]).run(); float(v.numpy())
    1.0
    """
    var_list = list(var_list)
    for v in var_list:
        if not isinstance(v, Variable):
            raise InvalidArgumentError(f"variables_initializer: expected Variables, received {type(v).__name__}")
    op = Operation(name, lambda ctx: _run_initializers(var_list, ctx), type="NoOp")
    if executing_eagerly():
        op.run()
    return op


def global_variables_initializer() -> Operation:
    """An op that initializes every global variable that exists now (the list is taken at call time)."""
    return variables_initializer(global_variables(), name="init")


initialize_all_variables = global_variables_initializer


def local_variables_initializer() -> Operation:
    """An op that initializes every local variable that exists now."""
    return variables_initializer(local_variables(), name="init")


def is_variable_initialized(variable: Variable) -> Tensor:
    """A tensor that is True once ``variable`` holds a value (evaluated when run)."""
    t = _Computed(f"{variable._name}/IsVariableInitialized", lambda: np.bool_(variable.is_initialized), (), np.bool_)
    return now(t) if executing_eagerly() else t


def report_uninitialized_variables(var_list: Iterable[Variable] | None = None, name: str | None = None) -> Tensor:
    """A tensor of the uninitialized variables' op names (bytes, as TF), all global and local ones by default.

    >>> import varstore as tf
    >>> tf.reset_default_graph(); v = tf.Variable(1, name="u")
    >>> tf.Session().run(tf.report_uninitialized_variables()).tolist()
    [b'u']
    """
    fixed = None if var_list is None else list(var_list)

    def names() -> np.ndarray:
        vs = fixed if fixed is not None else global_variables() + local_variables()
        return np.array([v._name.encode() for v in vs if not v.is_initialized], dtype=object)
    t = _Computed("report_uninitialized_variables/boolean_mask/GatherV2", names, (None,), object)
    return now(t) if executing_eagerly() else t


def _mutation(mode: str):
    def f(ref: Variable, value: Any, validate_shape: bool | None = None, use_locking: bool | None = None,
          name: str | None = None) -> Any:
        if not isinstance(ref, Variable):
            raise InvalidArgumentError(f"assign: ref must be a Variable, received {type(ref).__name__}")
        if executing_eagerly() and not isinstance(value, Tensor) and validate_shape is not False:
            (ref._assign_now(value) if mode == "assign" else ref._add_now(value, 1 if mode == "add" else -1))
            return ref
        return _run_if_eager(Assign(ref, mode, value, name=name, validate_shape=validate_shape))
    f.__name__ = {"assign": "assign", "add": "assign_add", "sub": "assign_sub"}[mode]
    f.__doc__ = f"TF's ``tf.{f.__name__}(ref, value)``: the op ``ref.{f.__name__}(value)`` builds."
    return f


assign, assign_add, assign_sub = _mutation("assign"), _mutation("add"), _mutation("sub")


def _scatter(mode: str):
    def f(ref: Variable, indices: Any, updates: Any, use_locking: bool = True, name: str | None = None) -> Any:
        if not isinstance(ref, Variable):
            raise InvalidArgumentError(f"scatter_{mode}: ref must be a Variable, received {type(ref).__name__}")
        return _run_if_eager(Scatter(ref, mode, indices, updates, name))
    f.__name__ = f"scatter_{mode}"
    f.__doc__ = f"TF's ``tf.scatter_{mode}(ref, indices, updates)``: rows ``indices`` of ``ref``, in place."
    return f


scatter_update, scatter_add, scatter_sub = _scatter("update"), _scatter("add"), _scatter("sub")
