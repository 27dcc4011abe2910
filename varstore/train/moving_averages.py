"""``tf.train.ExponentialMovingAverage``: shadow variables that track moving averages.

``ema.apply(var_list)`` creates one shadow variable per variable,
``"<var>/ExponentialMovingAverage"``, on the variable's device, initialized to
the variable's value (its initial value when both are initialized in one run),
and returns an op; each run of the op updates every shadow once::

    shadow -= (1 - decay) * (shadow - variable)

with ``decay = min(decay, (1 + num_updates) / (10 + num_updates))`` when
``num_updates`` (usually the global step) is given. In eager mode ``apply``
updates at once.

>>> import varstore as tf
>>> tf.reset_default_graph()
>>> w = tf.Variable(1.0, name="w")
>>> ema = tf.train.ExponentialMovingAverage(decay=0.9)
>>> update = ema.apply([w])
>>> ema.average_name(w)
'w/ExponentialMovingAverage'
>>> with tf.Session() as sess:
...     sess.run(tf.global_variables_initializer())
...     _ = sess.run(w.assign(2.0))
...     sess.run(update)
...     round(float(sess.run(ema.average(w))), 6)
1.1
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

import devices

from .. import initializers as _init
from ..graph import GraphKeys, get_default_graph
from ..ops import Operation, RunContext, control_dependencies, executing_eagerly
from ..tensors import Tensor, convert_to_tensor
from ..variables import Variable, _compute_device

_FLOATS = ("float16", "bfloat16", "float32", "float64")


class _ShadowInit(Tensor):
    """A shadow's initial value: TF's ``cond(is_variable_initialized(var), var.read_value,
    lambda: var.initial_value)``. Initialized in the same run, the variable goes first (so
    both hold the same draw); initialized before, its current value; not initialized, its
    initial value, computed without initializing it."""

    _base_name = "cond/Merge"

    def __init__(self, var: Variable):
        self.var = var
        self.shape, self.dtype = tuple(var.shape.as_list()), var.dtype
        self.graph = var.graph

    def _eval(self, device: Any, ctx: RunContext) -> Any:
        var = self.var
        if id(var) in ctx.run_variables or var.is_initialized:
            ctx.ensure(var)
            return device.asarray(var._device.read(var.storage.require()), dtype=self.dtype, copy=True)
        return device.asarray(ctx.value(var.initial_value, device), dtype=self.dtype, copy=True)

    def _home_device(self) -> Any:
        return self.var.device_object

    def variables(self) -> list:
        return [self.var]


def _is_float(dtype: Any) -> bool:
    return np.dtype(dtype).name in _FLOATS


def _host_float32(ctx: RunContext | None, t: Any) -> np.float32:
    """A scalar hyperparameter's value in this run, as TF computes it: float32."""
    if isinstance(t, (Tensor, Variable)):
        t = convert_to_tensor(t)
        value = ctx.value(t, devices.get_device("/cpu:0")) if ctx is not None else t.numpy()
        return np.float32(np.asarray(devices.to_host(value)).item())
    return np.float32(t)


class ExponentialMovingAverage:
    """Maintains moving averages of variables (TF 1.x's ``tf.train.ExponentialMovingAverage``).

    ``decay``: a float (or a scalar tensor); ``num_updates``: None, an int, or a tensor or
    variable (the global step) read at each run; ``zero_debias``: debias the averages of
    tensors (not variables) that start at zero, as TF; ``name``: the shadows' suffix and the
    update op's name.

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> step = tf.train.get_or_create_global_step()
    >>> v = tf.Variable(10.0, name="v")
    >>> ema = tf.train.ExponentialMovingAverage(0.999, num_updates=step)
    >>> op = ema.apply([v])
    >>> with tf.Session() as sess:
    ...     sess.run(tf.global_variables_initializer())
    ...     sess.run(v.assign(0.0))
    ...     sess.run(op)                       # decay = min(0.999, 1/10)
    ...     round(float(sess.run(ema.average(v))), 5)
    np.float32(0.0)
    1.0
    """

    def __init__(self, decay: Any, num_updates: Any = None, zero_debias: bool = False,
                 name: str = "ExponentialMovingAverage"):
        self._decay = decay
        self._num_updates = num_updates
        self._zero_debias = bool(zero_debias)
        self._name = name
        self._averages: dict[int, Variable] = {}  # id(var or tensor) -> shadow
        self._keys: dict[int, Any] = {}  # id -> the var or tensor itself (keeps ids valid)
        self._debias: dict[int, tuple[Variable, Variable]] = {}  # id(shadow) -> (biased, local_step)

    @property
    def name(self) -> str:
        return self._name

    # -- shadows --------------------------------------------------------------------------
    def apply(self, var_list: Any = None) -> Operation | None:
        """Create shadows for ``var_list`` (default: all trainable variables) where missing, and
        return the op that updates them (eager mode: update now, return None).

        Variables and tensors of a floating dtype only (TypeError otherwise, as TF). Calling it
        again for the same variables reuses their shadows.
        """
        if var_list is None:
            var_list = get_default_graph().get_collection(GraphKeys.TRAINABLE_VARIABLES)
        var_list = list(var_list)
        for var in var_list:
            if isinstance(var, Tensor) and executing_eagerly():
                raise TypeError("tf.train.ExponentialMovingAverage does not support non-Variable tensors when "
                                "eager execution is enabled.")
            if not isinstance(var, (Variable, Tensor)):
                raise TypeError(f"ExponentialMovingAverage.apply: expected Variables or Tensors, received "
                                f"{type(var).__name__}")
            if not _is_float(var.dtype):
                raise TypeError(f"The variables must be half, float, or double: {var.name}")
        for var in var_list:
            if id(var) not in self._averages:
                self._averages[id(var)] = self._create_shadow(var)
                self._keys[id(var)] = var
        pairs = [(self._averages[id(v)], v) for v in var_list]
        g = get_default_graph()
        with g.name_scope(self._name) as scope:
            op_name = scope[:-1]

        def update(ctx: RunContext | None) -> None:
            decay = _host_float32(ctx, self._decay)
            if self._num_updates is not None:
                n = _host_float32(ctx, self._num_updates)
                decay = min(decay, (np.float32(1.0) + n) / (np.float32(10.0) + n))
            for avg, var in pairs:
                self._update_one(avg, var, np.float32(1.0) - np.float32(decay), ctx)

        if executing_eagerly():
            update(None)
            return None
        return Operation(op_name, update, type="NoOp", graph=g, exact_name=True)

    def _create_shadow(self, var: Any) -> Variable:
        g = var.graph if isinstance(var, Variable) else get_default_graph()
        is_var = isinstance(var, Variable)
        if not is_var and (var.shape.ndims is None or None in var.shape.as_list()):
            raise ValueError(f"ExponentialMovingAverage: the shape of {var.name} must be fully defined, "
                             f"received {var.shape}")
        base = var._name if is_var else var.op.name
        # TF makes shadows outside any control dependencies (init_scope), at the graph's root, on
        # the variable's device whatever device function is in effect (colocated with it).
        where = var._requested if is_var else devices.current_device()
        with control_dependencies(None), devices.device(None), devices.device(where), g.name_scope(None):
            initial = _ShadowInit(var) if is_var else _init.Fill(tuple(var.shape.as_list()), 0, var.dtype)
            avg = Variable(initial, trainable=False, name=f"{base}/{self._name}", graph=g)
            if is_var:
                g.add_to_collection(GraphKeys.MOVING_AVERAGE_VARIABLES, var)
            elif self._zero_debias:
                biased = Variable(_init.Fill(tuple(var.shape.as_list()), 0, var.dtype), trainable=False,
                                  name=f"{avg._name}/biased", graph=g)
                local_step = Variable(_init.Fill((), 0, var.dtype), trainable=False,
                                      name=f"{avg._name}/local_step", graph=g)
                self._debias[id(avg)] = (biased, local_step)
        return avg

    def _update_one(self, avg: Variable, var: Any, one_minus_decay: np.float32, ctx: RunContext | None) -> None:
        """``avg -= (avg - value) * (1 - decay)`` on the shadow's device, in its dtype (TF casts the
        float32 ``1 - decay`` to it)."""
        dev = _compute_device(avg)
        if ctx is None:
            value = dev.asarray(var.value(), dtype=avg.dtype)
        else:
            value = dev.asarray(ctx.value(convert_to_tensor(var) if isinstance(var, Variable) else var, dev),
                                dtype=avg.dtype)
        # Scalars as numpy scalars, not 0-d arrays: cupy takes those in arithmetic, not arrays.
        factor = avg.dtype.type(one_minus_decay)
        # A GPU computes on its current device only (cupy has no implicit peer access): make the
        # shadow's device current for the arithmetic.
        with getattr(dev, "activate", contextlib.nullcontext)():
            self._update_on(dev, avg, value, factor)

    def _update_on(self, dev: Any, avg: Variable, value: Any, factor: Any) -> None:
        debias = self._debias.get(id(avg))
        if debias is None:
            with avg.storage.lock:
                cur = dev.asarray(avg._device.read(avg.storage.require()), dtype=avg.dtype)
                avg._assign_now(cur - (cur - value) * factor)
            return
        biased, local_step = debias
        b = dev.asarray(biased._device.read(biased.storage.require()), dtype=avg.dtype)
        b = b - (b - value) * factor
        biased._assign_now(b)
        local_step._add_now(np.asarray(1, avg.dtype), 1)
        one = avg.dtype.type(1)
        steps = avg.dtype.type(np.asarray(devices.to_host(local_step.value())).item())
        bias_factor = avg.dtype.type(one - np.power(one - factor, steps))
        avg._assign_now(b / bias_factor)

    # -- lookups --------------------------------------------------------------------------
    def average(self, var: Any) -> Variable | None:
        """The shadow variable of ``var``, or None if ``apply`` has not made one."""
        return self._averages.get(id(var))

    def average_name(self, var: Any) -> str:
        """The shadow's op name (``"v/ExponentialMovingAverage"``), also before ``apply``: the
        name to restore it from (see :meth:`variables_to_restore`)."""
        avg = self._averages.get(id(var))
        if avg is not None:
            return avg._name
        base = var._name if isinstance(var, Variable) else var.op.name
        return get_default_graph().unique_name(f"{base}/{self._name}", mark_as_used=False)

    def variables_to_restore(self, moving_avg_variables: Any = None) -> dict[str, Variable]:
        """A Saver ``var_list`` that loads the averages into the variables: ``{average name:
        variable}`` for the moving-average variables (default: trainable ones and the
        MOVING_AVERAGE_VARIABLES collection), ``{name: variable}`` for every other global one.

        >>> import varstore as tf
        >>> tf.reset_default_graph(); v = tf.Variable(1.0, name="v")
        >>> {k: v.name for k, v in tf.train.ExponentialMovingAverage(0.9).variables_to_restore().items()}
        {'v/ExponentialMovingAverage': 'v:0'}
        """
        g = get_default_graph()
        if moving_avg_variables is None:
            moving_avg_variables = (g.get_collection(GraphKeys.TRAINABLE_VARIABLES)
                                    + g.get_collection(GraphKeys.MOVING_AVERAGE_VARIABLES))
        unique: dict[int, Any] = {}
        for v in moving_avg_variables:
            unique.setdefault(id(v), v)
        name_map: dict[str, Any] = {}
        for v in unique.values():
            name_map[self.average_name(v)] = v
        names = {v.name for v in unique.values()}
        for v in g.get_collection(GraphKeys.GLOBAL_VARIABLES):
            if v.name not in names and v._name not in name_map:
                name_map[v._name] = v
        return name_map


def moving_average_variables(scope: str | None = None) -> list:
    """Variables given to an ``ExponentialMovingAverage.apply`` (TF's ``tf.moving_average_variables``)."""
    return get_default_graph().get_collection(GraphKeys.MOVING_AVERAGE_VARIABLES, scope)

