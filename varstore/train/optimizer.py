"""Optimizers with TF 1.x's names and update rules, each update run on the variable's device.

Gradients come from the user's own code (numpy, cupy, torch, anything with
DLPack or ``__array__``); ``apply_gradients`` moves each to its variable's
device, whatever device scope surrounds the call, and runs the fused
kernels there (on a CPU one compiled call per dtype group of variables).

In graph mode ``apply_gradients`` builds the train op once; each run of it is
one step, with the gradients' current values (placeholders fed per step).
In eager mode it applies the step at once.

>>> import numpy as np, varstore as tf
>>> tf.reset_default_graph()
>>> w = tf.Variable([1.0, 2.0], name="w")
>>> g = tf.placeholder(tf.float32, [2])
>>> train = tf.train.GradientDescentOptimizer(0.5).apply_gradients([(g, w)])
>>> with tf.Session() as sess:
...     sess.run(tf.global_variables_initializer())
...     sess.run(train, feed_dict={g: np.array([2.0, 2.0])})
...     sess.run(w).tolist()
[0.0, 1.0]
"""
from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

import devices
from devices.dtypes import is_floating
from devices.errors import InvalidArgumentError

from .. import initializers as _init
from ..graph import GraphKeys, get_default_graph
from ..ops import Operation, RunContext, executing_eagerly
from ..storage import holding as _holding
from ..tensors import IndexedSlices, Tensor
from ..variables import Variable, _compute_device


def get_global_step(graph=None) -> Variable | None:
    """The graph's global step variable, or None."""
    g = graph or get_default_graph()
    steps = g.get_collection(GraphKeys.GLOBAL_STEP)
    if len(steps) > 1:
        raise InvalidArgumentError(f"the graph has {len(steps)} global steps: {[v.name for v in steps]}")
    return steps[0] if steps else None


def get_or_create_global_step(graph=None) -> Variable:
    """The graph's int64 ``global_step`` variable, created (uninitialized, like TF) if missing.

    >>> import varstore as tf
    >>> tf.reset_default_graph()
    >>> tf.train.get_or_create_global_step().name
    'global_step:0'
    """
    g = graph or get_default_graph()
    step = get_global_step(g)
    if step is None:
        with devices.device(None), g.name_scope(None):
            step = Variable(_init.zeros([], "int64"), trainable=False, name="global_step", graph=g,
                            collections=[GraphKeys.GLOBAL_VARIABLES, GraphKeys.GLOBAL_STEP])
    return step


create_global_step = get_or_create_global_step


def _scalar(x: Any, ctx: RunContext | None = None) -> float:
    """A hyperparameter's current value: a number, a Variable, a tensor (a placeholder fed in
    this run, a decayed learning rate) or a function of none."""
    if isinstance(x, Variable):
        return float(x.numpy())
    if isinstance(x, Tensor):
        ctx = ctx if ctx is not None else RunContext()
        return float(devices.to_host(ctx.value(x, x._home_device())))
    if callable(x):
        return float(x())
    return float(x)


class Optimizer:
    """Base class: slots, non-slot variables, the per-device batched update.

    Subclasses name their kernel rule, their slots' initial values and their
    hyperparameters.
    """

    _rule: str = ""

    def __init__(self, use_locking: bool = False, name: str = "Optimizer"):
        self._name = name
        self._slots: dict[str, dict[int, Variable]] = defaultdict(dict)  # slot name -> id(var) -> slot
        self._non_slot: dict[str, Variable] = {}
        self._graph = get_default_graph()
        # device -> what its kernels checked of this optimizer's variables (kernels.apply_dense_many)
        self._kernel_caches: dict[Any, dict] = {}
        # What one step carries from _hyper to _finish (the run's context, Adam's powers): per
        # thread, so two threads running train ops of this optimizer never see each other's.
        self._step_state = threading.local()

    # -- what subclasses provide ------------------------------------------------------
    def _slot_specs(self) -> list[tuple[str, float]]:
        """(slot name, initial value) in TF's creation order (which fixes the slot variables' names)."""
        return []

    def _hyper(self) -> dict:
        """Kernel hyperparameters for this step."""
        raise NotImplementedError

    def _create_non_slots(self, var_list: list) -> None:
        pass

    def _finish(self) -> None:
        """After every variable's update (Adam advances its beta powers)."""

    # -- slots ----------------------------------------------------------------------------
    def get_slot_names(self) -> list[str]:
        """``["m", "v"]`` for Adam, ``["momentum"]`` for Momentum, ..."""
        return [n for n, _ in self._slot_specs()]

    def get_slot(self, var: Variable, name: str) -> Variable | None:
        """The slot variable ``name`` of ``var`` (None if it has none yet)."""
        return self._slots.get(name, {}).get(id(var))

    def variables(self) -> list[Variable]:
        """Every variable this optimizer created: slots and non-slot ones (beta powers)."""
        out = list(self._non_slot.values())
        for per_var in self._slots.values():
            out += list(per_var.values())
        return sorted(out, key=lambda v: v._name)

    def _make_variable(self, name: str, value: float, like: Variable, shape, slot_of: tuple | None) -> Variable:
        """A non-trainable variable on ``like``'s device, reused if a meta graph import or an earlier
        optimizer already made it, restored if the last Saver.restore of this graph holds it."""
        g = like.graph
        # Variables another optimizer of this process owns are never shared: a second Adam in
        # the graph gets beta1_power_1, as in TF. Unowned ones came from import_meta_graph.
        owned = g.__dict__.setdefault("_optimizer_owned", set())
        existing = g.get_variable_by_name(name)
        if existing is not None and id(existing) not in owned and existing.shape == tuple(shape) \
                and existing.dtype == like.dtype and existing.slot_of == slot_of:
            var = existing
        else:
            with devices.device(None), devices.device(like._requested), g.name_scope(None):
                var = Variable(_init.Fill(shape, value, like.dtype), trainable=False, name=name, graph=g)
            var.slot_of = slot_of
        owned.add(id(var))
        # Graph mode: initialized by global_variables_initializer, as in TF (a checkpoint last
        # restored into this graph fills it now). Eager: the variable initialized itself.
        if not var.is_initialized:
            _restore_pending(var)
        return var

    def _ensure_slots(self, var: Variable) -> None:
        for slot, value in self._slot_specs():
            if id(var) not in self._slots[slot]:
                self._slots[slot][id(var)] = self._make_variable(
                    self._slot_var_name(var, slot), value, var, var.storage.shape, (var._name, slot))

    def _slot_var_name(self, var: Variable, slot: str) -> str:
        # TF names slots <var>/<Optimizer>, <var>/<Optimizer>_1, ... in creation order.
        k = [n for n, _ in self._slot_specs()].index(slot)
        return f"{var._name}/{self._name}" + (f"_{k}" if k else "")

    def build(self, var_list: Iterable[Variable]) -> None:
        """Create slots and non-slot variables now (as TF does when the train op is built),
        so a Saver created next saves them and a restore fills them."""
        var_list = list(var_list)
        self._create_non_slots(var_list)
        for v in var_list:
            self._ensure_slots(v)

    # -- the update -----------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars: Iterable, global_step: Variable | None = None,
                        name: str | None = None) -> Operation | None:
        """The train op: each run applies one step with the gradients' values in that run
        (arrays, tensors, placeholders fed per step, IndexedSlices), each variable's update on
        its own device. Eager mode: the step is applied now (and None returned).

        ``None`` gradients are skipped; ``global_step`` (if given) is incremented by each step.
        Slots are created now, as in TF: ``global_variables_initializer`` initializes them.
        """
        pairs = [(g, v) for g, v in grads_and_vars]
        for _g, v in pairs:
            if not isinstance(v, Variable):
                raise InvalidArgumentError(f"apply_gradients: expected (gradient, Variable) pairs, "
                                           f"received a {type(v).__name__} as the variable")
        given = [v.name for _, v in pairs]
        pairs = [(g, v) for g, v in pairs if g is not None]
        if not pairs:
            raise ValueError(f"No gradients provided for any variable: {given}")
        self.build(v for _, v in pairs)
        if executing_eagerly():
            self._step(pairs, global_step, None)
            return None
        for g, v in pairs:
            _check_static_shape(g, v)
        return Operation(name or self._name, lambda ctx: self._step(pairs, global_step, ctx), type="NoOp",
                         graph=self._graph)

    def _step(self, pairs: list, global_step: Variable | None, ctx: RunContext | None) -> None:
        """One step: the gradients' values in the run ``ctx``, then every device's update."""
        self._step_state.ctx = ctx
        try:
            hyper = self._hyper()
            by_device: dict[Any, list] = defaultdict(list)
            for g, v in pairs:
                if ctx is not None:
                    g = _value_in(g, v, ctx)
                by_device[v.device_object].append((self._gradient_on_device(g, v), v))
            # A remote device's batched update returns its wait: start every device's update
            # first, then wait, so ps tasks update in parallel.
            waits = [self._apply_on(dev, items, hyper) for dev, items in by_device.items()]
            for wait in waits:
                if wait is not None:
                    wait()
            self._finish()
            if global_step is not None:
                global_step._add_now(1, 1)
        finally:
            self._step_state.ctx = None

    def _s(self, x: Any) -> float:
        """A hyperparameter's value in the current step."""
        return _scalar(x, getattr(self._step_state, "ctx", None))

    def _gradient_on_device(self, g: Any, v: Variable) -> Any:
        dev = v.device_object
        # What dev.asarray and _cast conclude for the common case on a CPU, without their
        # ~4 us a variable (most of a small variable's step): the gradient as it is.
        if type(g) is np.ndarray and dev.kind == "cpu" and g.dtype == v._dtype and g.shape == v.storage.shape \
                and g.flags.c_contiguous:
            return g
        if isinstance(g, IndexedSlices):
            values = dev.asarray(g.values)
            indices = dev.asarray(g.indices)
            if indices.ndim != 1 or indices.dtype.kind not in "iu":
                raise InvalidArgumentError(f"apply_gradients: {v.name}: indices must be a 1-D integer array, "
                                           f"received shape {tuple(indices.shape)} dtype {indices.dtype}")
            want = (indices.shape[0],) + v.storage.shape[1:]
            if tuple(values.shape) != want:
                raise InvalidArgumentError(f"apply_gradients: {v.name}: sparse values have shape "
                                           f"{tuple(values.shape)}, expected {want}")
            return IndexedSlices(self._cast(values, v), indices, v.storage.shape)
        if isinstance(g, Variable):
            g = g._live()
        arr = dev.asarray(g)
        if tuple(arr.shape) != v.storage.shape:
            raise InvalidArgumentError(f"apply_gradients: gradient for {v.name} has shape {tuple(arr.shape)}, "
                                       f"the variable has shape {v.storage.shape}")
        return self._cast(arr, v)

    @staticmethod
    def _cast(arr: Any, v: Variable) -> Any:
        if arr.dtype == v._dtype:
            return arr
        # Half-precision variables take float32 gradients as they are (the kernel computes in float32).
        if v.dtype.itemsize == 2 and is_floating(v.dtype) and arr.dtype == np.float32:
            return arr
        _init._check_cast(arr.dtype, v.dtype, f"gradient for {v.name}")
        return v.device_object.asarray(arr, dtype=v.dtype)

    def _apply_on(self, dev: Any, items: list, hyper: dict) -> Any:
        """Run the updates for one device. A remote device batches them into one call,
        and may return a function that waits for it."""
        from . import kernels  # numba compiles on first use; importing varstore.train stays cheap
        batch = getattr(dev, "apply_updates", None)
        slot_names = self.get_slot_names()
        if getattr(dev, "kind", None) == "gpu":  # one multi-tensor launch per dtype group, no host sync
            from .kernels import gpu as gpu_kernels
            return gpu_kernels.apply_variables(self._rule, items, slot_names, self.get_slot, hyper,
                                               self._device_powers(dev))
        hyper = self._host_hyper(hyper)
        if batch is not None:
            return batch(self._rule, [(g, v, [self.get_slot(v, s) for s in slot_names]) for g, v in items],
                         slot_names, hyper)
        # Consecutive dense gradients make one apply_dense_many call (one compiled call per
        # dtype group on a CPU); a sparse one runs alone, in its place in the order.
        dense: list = []
        for g, v in items:
            if not isinstance(g, IndexedSlices):
                dense.append((g, v))
                continue
            if dense:
                self._apply_dense_many(kernels, dev, dense, slot_names, hyper)
                dense = []
            slots = {s: self.get_slot(v, s) for s in slot_names}
            with v.storage.lock:
                value = v.storage.require()
                arrays = {s: sv.storage.require() for s, sv in slots.items()}
                kernels.apply_sparse(self._rule, dev, value, g.indices, g.values, arrays, **hyper)
        if dense:
            self._apply_dense_many(kernels, dev, dense, slot_names, hyper)

    def _apply_dense_many(self, kernels: Any, dev: Any, items: list, slot_names: list, hyper: dict) -> None:
        """Dense updates of ``items`` in one call, holding every variable's lock throughout
        (each update held its own variable's lock before); slots are read under them, as before."""
        variables = [v for _, v in items]
        with _holding([v.storage.lock for v in variables]):
            values = [v.storage.require() for v in variables]
            slots = {s: [self._slots[s][id(v)].storage.require() for v in variables] for s in slot_names}
            cache = self._kernel_caches.setdefault(dev, {})
            kernels.apply_dense_many(self._rule, dev, values, [g for g, _ in items], slots, hyper, cache)

    def _device_powers(self, dev: Any) -> Any:
        """Adam's beta power Variables when they stay on ``dev`` for the kernel to read (GPU)."""
        return None

    def _host_hyper(self, hyper: dict) -> dict:
        """``hyper`` for a kernel that takes host numbers only."""
        return hyper

    def minimize(self, *args: Any, **kwargs: Any):
        raise NotImplementedError(
            "varstore has no automatic differentiation: compute gradients in your own numpy/cupy/torch code "
            "and call apply_gradients(zip(grads, variables))")

    compute_gradients = minimize


def _value_in(g: Any, v: Variable, ctx: RunContext) -> Any:
    """A gradient's value in the run ``ctx``: tensors (placeholders) evaluated where ``v`` computes."""
    if isinstance(g, Tensor):
        fed = ctx.feeds.get(id(g))
        dev = _compute_device(v)  # the host for a CPU or ps variable
        if type(fed) is np.ndarray and fed.dtype == v._dtype and dev.kind == "cpu":
            return fed  # a fed host gradient (its shape checked by the session): as it is
        return ctx.value(g, dev)
    if isinstance(g, IndexedSlices) and (isinstance(g.values, Tensor) or isinstance(g.indices, Tensor)):
        dev = _compute_device(v)
        values = ctx.value(g.values, dev) if isinstance(g.values, Tensor) else g.values
        indices = ctx.value(g.indices, dev) if isinstance(g.indices, Tensor) else g.indices
        return IndexedSlices(values, indices, g.dense_shape)
    return g


def _check_static_shape(g: Any, v: Variable) -> None:
    """A tensor gradient whose shape is known and cannot fit ``v`` fails when the op is built, as in TF."""
    shape = g._shape if isinstance(g, Tensor) else None
    have = v.storage.shape
    if shape is not None and (len(shape) != len(have) or any(a is not None and a != b for a, b in zip(shape, have))):
        raise ValueError(f"Shapes {have} and {shape} are incompatible "
                         f"(the gradient for {v.name})")


def _restore_pending(var: Variable) -> bool:
    """Restore ``var`` from the checkpoint last restored into its graph, if that holds it.

    Slots are created at the first step, after a resume's restore: without this they
    would start from zero and the resumed run would drift from the uninterrupted one.
    """
    path = getattr(var.graph, "_last_restore", None)
    if not path:
        return False
    from ..checkpoint.shards import open_checkpoint
    from .restore import restore_one
    try:
        with open_checkpoint(path) as r:  # ours (sharded or not) or a TF bundle
            key = var._name
            if not r.has_tensor(key) or tuple(r.shape(key)) != var.shape or r.dtype(key) != var.dtype:
                return False
            try:
                restore_one(r, key, var)
            except BaseException:
                var.storage.forget()
                raise
            return True
    except FileNotFoundError:
        return False


class GradientDescentOptimizer(Optimizer):
    """``var -= learning_rate * grad``"""

    _rule = "sgd"

    def __init__(self, learning_rate: Any, use_locking: bool = False, name: str = "GradientDescent"):
        super().__init__(use_locking, name)
        self._lr = learning_rate

    def _hyper(self):
        return {"lr": self._s(self._lr)}


class MomentumOptimizer(Optimizer):
    """``accum = momentum * accum + grad; var -= lr * accum`` (Nesterov: ``var -= lr * (grad + momentum * accum)``)."""

    _rule = "momentum"

    def __init__(self, learning_rate: Any, momentum: Any, use_locking: bool = False, name: str = "Momentum",
                 use_nesterov: bool = False):
        super().__init__(use_locking, name)
        self._lr, self._momentum, self._nesterov = learning_rate, momentum, bool(use_nesterov)

    def _slot_specs(self):
        return [("momentum", 0.0)]

    def _hyper(self):
        return {"lr": self._s(self._lr), "momentum": self._s(self._momentum), "use_nesterov": self._nesterov}


class AdamOptimizer(Optimizer):
    """Adam in TF 1.x's form: the bias correction folded into the step size,
    ``lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``, with ``beta1_power`` and
    ``beta2_power`` kept as variables colocated with the first variable (by name)."""

    _rule = "adam"

    def __init__(self, learning_rate: Any = 0.001, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                 use_locking: bool = False, name: str = "Adam"):
        super().__init__(use_locking, name)
        self._lr, self._beta1, self._beta2, self._epsilon = learning_rate, beta1, beta2, epsilon

    def _slot_specs(self):
        return [("m", 0.0), ("v", 0.0)]

    def _create_non_slots(self, var_list):
        if self._non_slot or not var_list:
            return
        first = min(var_list, key=lambda v: v._name)
        for key, value in (("beta1_power", self._beta1), ("beta2_power", self._beta2)):
            self._non_slot[key] = self._make_power(key, value, first)

    def _make_power(self, name: str, value: float, first: Variable) -> Variable:
        # The powers are float32 scalars as in TF (float64 for a float64 first variable).
        dtype = first.dtype if first.dtype == np.float64 else np.dtype(np.float32)
        proxy = _Like(first, dtype)
        return self._make_variable(name, value, proxy, (), None)

    def _hyper(self):
        p1 = self._non_slot["beta1_power"]
        if getattr(p1.device_object, "kind", None) == "gpu":
            # The powers stay on the card: the GPU kernel folds the bias correction itself and
            # _finish advances them there, so a step makes no host sync (issue 15). A device
            # without that kernel folds them from a host read (_host_hyper).
            self._step_state.powers_read, self._step_state.powers_dev = None, p1.device_object
            return {"lr": self._s(self._lr), "beta1": self._s(self._beta1), "beta2": self._s(self._beta2),
                    "epsilon": self._s(self._epsilon)}
        self._step_state.powers_dev = None
        # Read once per step: _finish advances these same values (on a ps task each read
        # is a round trip).
        self._step_state.powers_read = {k: self._non_slot[k].numpy() for k in ("beta1_power", "beta2_power")}
        b1p = float(self._step_state.powers_read["beta1_power"])
        b2p = float(self._step_state.powers_read["beta2_power"])
        lr = self._s(self._lr) * math.sqrt(1.0 - b2p) / (1.0 - b1p)
        return {"lr": lr, "beta1": self._s(self._beta1), "beta2": self._s(self._beta2),
                "epsilon": self._s(self._epsilon)}

    def _device_powers(self, dev):
        if getattr(self._step_state, "powers_dev", None) is dev:
            return self._non_slot["beta1_power"], self._non_slot["beta2_power"]
        return None

    def _host_hyper(self, hyper):
        if getattr(self._step_state, "powers_dev", None) is None:
            return hyper
        b1p, b2p = (float(self._non_slot[k].numpy()) for k in ("beta1_power", "beta2_power"))
        return dict(hyper, lr=hyper["lr"] * math.sqrt(1.0 - b2p) / (1.0 - b1p))

    def _finish(self):
        if getattr(self._step_state, "powers_dev", None) is not None:
            for key, beta in (("beta1_power", self._beta1), ("beta2_power", self._beta2)):
                p = self._non_slot[key]
                with p.storage.lock, p.device_object.activate():
                    arr = p.storage.require()
                    arr *= arr.dtype.type(self._s(beta))  # in place on the card: no sync
            return
        read = getattr(self._step_state, "powers_read", None) or {}
        self._step_state.powers_read = None
        for key, beta in (("beta1_power", self._beta1), ("beta2_power", self._beta2)):
            p = self._non_slot[key]
            cur = read.get(key)
            p._assign_now((p.numpy() if cur is None else cur) * p.dtype.type(self._s(beta)))

    def get_beta_powers(self) -> tuple[Variable, Variable]:
        return self._non_slot["beta1_power"], self._non_slot["beta2_power"]


class _Like:
    """Stands in for a variable when making a non-slot variable: its graph and device, another dtype."""

    def __init__(self, var: Variable, dtype):
        self.graph, self._requested, self.dtype = var.graph, var._requested, np.dtype(dtype)


class AdagradOptimizer(Optimizer):
    """``accum += grad^2; var -= lr * grad / sqrt(accum)``, accumulators starting at ``initial_accumulator_value``."""

    _rule = "adagrad"

    def __init__(self, learning_rate: Any, initial_accumulator_value: float = 0.1, use_locking: bool = False,
                 name: str = "Adagrad"):
        if initial_accumulator_value <= 0.0:
            raise InvalidArgumentError(
                f"initial_accumulator_value must be positive, received {initial_accumulator_value}")
        super().__init__(use_locking, name)
        self._lr, self._init_acc = learning_rate, float(initial_accumulator_value)

    def _slot_specs(self):
        return [("accumulator", self._init_acc)]

    def _hyper(self):
        return {"lr": self._s(self._lr)}


class RMSPropOptimizer(Optimizer):
    """TF 1.x's RMSProp: ``ms = decay*ms + (1-decay)*g^2; mom = momentum*mom + lr*g/sqrt(ms + eps); var -= mom``
    (centered: the mean gradient ``mg`` is subtracted: ``sqrt(ms - mg^2 + eps)``). ``rms`` starts at one."""

    _rule = "rmsprop"

    def __init__(self, learning_rate: Any, decay: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-10,
                 use_locking: bool = False, centered: bool = False, name: str = "RMSProp"):
        super().__init__(use_locking, name)
        self._lr, self._decay, self._momentum, self._epsilon = learning_rate, decay, momentum, epsilon
        self._centered = bool(centered)

    def _slot_specs(self):
        specs = [("rms", 1.0)]
        if self._centered:
            specs.append(("mg", 0.0))
        return specs + [("momentum", 0.0)]

    def _hyper(self):
        return {"lr": self._s(self._lr), "decay": self._s(self._decay), "momentum": self._s(self._momentum),
                "epsilon": self._s(self._epsilon), "centered": self._centered}
