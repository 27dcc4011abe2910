"""Variable: a named buffer on one device, initialized by a deferred value.

Every op that changes a variable (assign*, load, optimizer updates,
restore) runs on the variable's own device, whatever device scope
surrounds the call: values from elsewhere are moved there first.

>>> import varstore as tf
>>> v = tf.Variable(tf.zeros([3]), name="v")
>>> tf.variables_initializer([v]).run()
>>> v.assign_add([1.0, 2.0, 3.0]).numpy().tolist()
[1.0, 2.0, 3.0]
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

import devices
from devices.backends.arrays import host_array
from devices.dtypes import is_bfloat16
from devices.errors import InvalidArgumentError
from devices.scope import OpDescription

from . import initializers as _init
from .graph import Graph, GraphKeys, get_default_graph
from .ops import Fetch, Op
from .storage import Storage

log = logging.getLogger("varstore")


class _OpInfo:
    """``v.op``: what TF code reads off a variable's op (name, type, device)."""

    type = "VariableV2"

    def __init__(self, var: Variable):
        self._var = var

    @property
    def name(self) -> str:
        return self._var.name

    @property
    def device(self) -> str:
        return self._var.device


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
        self._dtype = self._initial.dtype
        self.name = self.graph.unique_name(name or "Variable")
        # The value, its lock and its shape: the surface the Saver, optimizers and ps tier use.
        self.storage = Storage(self.name, shape0)
        self.trainable = bool(trainable)
        self.validate_shape = bool(validate_shape)
        self._requested = devices.resolve(OpDescription("VariableV2", self.name, shape0, self._dtype))
        self._device = devices.get_device(self._requested)
        self.initializer = Op(f"{self.name}/Assign", lambda sess: _run_initializers([self], sess))
        cols = set(collections) if collections is not None else {GraphKeys.GLOBAL_VARIABLES}
        if self.trainable:
            cols.add(GraphKeys.TRAINABLE_VARIABLES)
        self.graph.add_to_collections(cols, self)
        # (primary variable's name, slot name) when this is an optimizer slot: set by the
        # optimizer that creates it, written to and read from meta graphs.
        self.slot_of: tuple[str, str] | None = None

    # -- properties ---------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.storage.shape

    def get_shape(self) -> tuple[int, ...]:
        return self.storage.shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

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
    def initial_value(self) -> _init.InitialValue:
        return self._initial

    def initialized_value(self) -> _init.InitialValue:
        """This variable's value, its initializer run first when due: use it to initialize another.

        ``w2 = tf.Variable(weights.initialized_value() * 2.0, name="w2")``
        """
        return _init.VariableValue(self, initialize=True)

    @property
    def is_initialized(self) -> bool:
        return self.storage.array is not None

    # -- reading --------------------------------------------------------------

    def value(self) -> Any:
        """The live array on the variable's device (no copy: later assigns show through).

        For a variable on a ps task this is a read-only host copy fetched from the task.
        """
        return self._device.read(self.storage.require())

    def read_value(self) -> Any:
        """A snapshot copy on the variable's device, consistent even while other threads assign."""
        with self.storage.lock:
            return self._device.asarray(self.storage.require(), copy=True)

    def numpy(self) -> np.ndarray:
        """A host (numpy) copy, consistent even while other threads assign."""
        with self.storage.lock:
            value = self.storage.require()
            out = np.empty(value.shape, value.dtype) if not isinstance(value, np.ndarray) else None
            return self._device.to_host(value, out) if out is not None else value.copy()

    def eval(self, session: Any = None) -> np.ndarray:
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
        >>> _ = v.assign([3.0, 4.0])
        >>> a.tolist(), np.shares_memory(a, v.value()), np.shares_memory(np.array(v), a)
        ([3.0, 4.0], True, False)
        """
        if copy:
            with self.storage.lock:
                host = self.numpy()
            return host if dtype is None or host.dtype == np.dtype(dtype) else host.astype(dtype)
        live = self.value()
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
        value = self.value()
        if isinstance(value, np.ndarray) and is_bfloat16(value.dtype):
            from devices.backends.dlpack import bfloat16_capsule
            return bfloat16_capsule(value, **kwargs)
        return value.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self.value().__dlpack_device__()

    @property
    def __cuda_array_interface__(self) -> dict:
        """The GPU buffer's interface (``cupy.asarray(v)`` shares it); absent on other devices."""
        if self._device.kind != "gpu":
            # AttributeError, so hasattr(v, "__cuda_array_interface__") is False, initialized or not.
            raise AttributeError(f"variable {self.name} lives on {self.device}, not on a GPU: "
                                 f"it has no __cuda_array_interface__")
        return self.value().__cuda_array_interface__

    # -- writing (always on the variable's device) ----------------------------
    def _converted(self, value: Any) -> Any:
        """``value`` on this variable's device with its dtype, shape checked."""
        if isinstance(value, Variable):
            value = value.value()
        elif isinstance(value, _init.InitialValue):
            value = self._device.evaluate(value, _init.EvalContext())
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

    def assign(self, value: Any, use_locking: bool = False, name: Any = None, read_value: bool = True) -> Variable:
        """Set the value (on the variable's device; ``value`` from any device is moved there)."""
        new = self._converted(value)
        if new is not self.storage.array:
            self._store(new, fresh=False)
        return self

    def assign_add(self, delta: Any, use_locking: bool = False, name: Any = None, read_value: bool = True) -> Variable:
        """``v += delta`` in place, on the variable's device."""
        d = self._converted(delta)
        with self.storage.lock:
            self._device.add_into(self.storage.require(), d, 1)
        return self

    def assign_sub(self, delta: Any, use_locking: bool = False, name: Any = None, read_value: bool = True) -> Variable:
        """``v -= delta`` in place, on the variable's device."""
        d = self._converted(delta)
        with self.storage.lock:
            self._device.add_into(self.storage.require(), d, -1)
        return self

    def load(self, value: Any, session: Any = None) -> None:
        """Set the value (TF 1.x's ``Variable.load``; no op is created)."""
        self.assign(value)

    # -- initialization -------------------------------------------------------
    def _initialize_in(self, ctx: _init.EvalContext) -> None:
        """Run this variable's initializer within one run, at most once, dependencies first."""
        key = id(self)
        if key in ctx.done:
            return
        if any(v is self for v in ctx.in_progress):
            names = [v.name for v in ctx.in_progress[[id(v) for v in ctx.in_progress].index(key):]] + [self.name]
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
        self._store(value, fresh=True)  # evaluate() always returns a new array
        ctx.done.add(key)
        if ctx.on_initialized is not None:
            ctx.on_initialized(self)

    # -- arithmetic returns device arrays ------------------------------------
    def _binary(op):
        def f(self, other):
            other = other.value() if isinstance(other, Variable) else other
            return op(self.value(), other)
        return f

    import operator as _op
    __add__ = _binary(_op.add)
    __radd__ = _binary(lambda a, b: b + a)
    __sub__ = _binary(_op.sub)
    __rsub__ = _binary(lambda a, b: b - a)
    __mul__ = _binary(_op.mul)
    __rmul__ = _binary(lambda a, b: b * a)
    __truediv__ = _binary(_op.truediv)
    __rtruediv__ = _binary(lambda a, b: b / a)
    __floordiv__ = _binary(_op.floordiv)
    __mod__ = _binary(_op.mod)
    __pow__ = _binary(_op.pow)
    __matmul__ = _binary(_op.matmul)
    __rmatmul__ = _binary(lambda a, b: b @ a)
    __lt__ = _binary(_op.lt)
    __le__ = _binary(_op.le)
    __gt__ = _binary(_op.gt)
    __ge__ = _binary(_op.ge)
    __getitem__ = _binary(_op.getitem)
    del _binary, _op

    def __neg__(self):
        return -self.value()

    def __abs__(self):
        return abs(self.value())

    __hash__ = object.__hash__  # variables are keys in dicts (Saver, optimizer slots)
    __array_priority__ = 100  # numpy defers to our reflected operators

    def __repr__(self) -> str:
        return (f"<varstore.Variable '{self.name}' shape={self.storage.shape} dtype={self._dtype.name} "
                f"device={self.device}{'' if self.is_initialized else ' uninitialized'}>")


def _is_readonly(a: Any) -> bool:
    flags = getattr(a, "flags", None)
    return flags is not None and not getattr(flags, "writeable", True)


def _run_initializers(var_list: list, session: Any = None) -> None:
    log_placement = bool(getattr(session, "_log_device_placement", False))

    def placed(v: Variable) -> None:
        if log_placement:
            # TF prints placement to stderr; so do we, only when the user asked for it.
            sys.stderr.write(f"{v.name}: (VariableV2): {v.device}\n")
        log.debug("initialized %s on %s", v.name, v.device)

    ctx = _init.EvalContext(var_list, placed)
    for v in var_list:
        v._initialize_in(ctx)


# -- module-level functions ---------------------------------------------------------
def global_variables(scope: str | None = None) -> list:
    """Variables in the default graph's global collection (all of them, unless filtered by ``scope``)."""
    return get_default_graph().get_collection(GraphKeys.GLOBAL_VARIABLES, scope)


def trainable_variables(scope: str | None = None) -> list:
    """Variables created with ``trainable=True``."""
    return get_default_graph().get_collection(GraphKeys.TRAINABLE_VARIABLES, scope)


def local_variables(scope: str | None = None) -> list:
    return get_default_graph().get_collection(GraphKeys.LOCAL_VARIABLES, scope)


def variables_initializer(var_list: Iterable[Variable], name: str = "init") -> Op:
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
    return Op(name, lambda sess: _run_initializers(var_list, sess))


def global_variables_initializer() -> Op:
    """An op that initializes every global variable that exists now (the list is taken at call time)."""
    return variables_initializer(global_variables(), name="init")


initialize_all_variables = global_variables_initializer


def local_variables_initializer() -> Op:
    return variables_initializer(local_variables(), name="init_local")


def is_variable_initialized(variable: Variable) -> Fetch:
    """A fetch that is True once ``variable`` holds a value (evaluated when run)."""
    return Fetch(f"{variable.name}/IsInitialized", lambda: variable.is_initialized)


def report_uninitialized_variables(var_list: Iterable[Variable] | None = None) -> Fetch:
    """A fetch giving the names of the uninitialized variables (all global ones by default)."""
    fixed = None if var_list is None else list(var_list)
    return Fetch("report_uninitialized_variables",
                 lambda: [v.name for v in (fixed if fixed is not None else global_variables() + local_variables())
                          if not v.is_initialized])
