"""What the ps tier needs from the library above it, as Protocols (devices imports nothing
from it: any library whose objects have these members can keep variables on ps tasks).

Driver side, :meth:`PsDevice.evaluate <devices.backends.ps.PsDevice.evaluate>` takes an
:class:`InitialValue` and an :class:`EvalContext`; :meth:`PsDevice.apply_updates
<devices.backends.ps.PsDevice.apply_updates>` takes :class:`Variable` s and gradients
(host arrays or :class:`SparseGradient` s). Task side, the registered operations
(:mod:`devices.backends.ps.operations`) rebuild an initial value from its description
and run the update kernels.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable


class Storage(Protocol):
    """A variable's value: ``array`` (None until initialized; a RemoteArray on a ps task),
    ``require()`` (the array, or an error naming the variable when it has none). The ps
    device only reads it; restoring (``adopt``/``forget`` under ``lock``) is its owner's job."""

    array: Any

    def require(self) -> Any: ...


class Variable(Protocol):
    """A variable as the ps device sees it: a name (for errors and shipped values), its
    storage, and its value as an array on its own device (``value()``, shipped to a task
    when an initial value on another place reads it)."""

    name: str
    storage: Storage

    def value(self) -> Any: ...


class EvalContext(Protocol):
    """One run of initializers: ``ensure(var)`` initializes ``var`` first if it is due."""

    def ensure(self, var: Any) -> None: ...


class InitialValue(Protocol):
    """A deferred initial value (weak-referenceable: a task keeps its generator per value).

    ``describe()``: data (no code) that rebuilds it on the task, None when it cannot be
    described (it is then evaluated on the local CPU and its result sent).
    ``dependencies()``: variables to initialize before it (``initialized_value()``);
    ``variables()``: every variable it reads, whose values travel with the description.
    """

    shape: Any
    dtype: Any

    def describe(self) -> dict | None: ...

    def dependencies(self) -> Iterable[Variable]: ...

    def variables(self) -> Iterable[Variable]: ...

    def evaluate(self, device: Any, ctx: Any) -> Any: ...


@runtime_checkable
class SparseGradient(Protocol):
    """A sparse update: rows ``indices`` of the variable get ``values``."""

    values: Any
    indices: Any


class ApplyDense(Protocol):
    """``apply_dense(rule, device, var, grad, slots, **hyper)``: one in-place step on ``device``."""

    def __call__(self, rule: str, device: Any, var: Any, grad: Any, slots: Mapping[str, Any],
                 **hyper: Any) -> None: ...


class ApplySparse(Protocol):
    """``apply_sparse(rule, device, var, indices, values, slots, **hyper)``: rows ``indices`` only."""

    def __call__(self, rule: str, device: Any, var: Any, indices: Any, values: Any, slots: Mapping[str, Any],
                 **hyper: Any) -> None: ...


class BuildInitial(Protocol):
    """``build_initial(description, lookup) -> InitialValue``: ``lookup(name)`` gives a stand-in
    for a variable the value reads (the task's ``_Shipped``: ``name``, ``shape``, ``dtype``,
    ``value()`` and ``_live()`` (its array), ``is_initialized`` (True), and
    ``_initialize_in(ctx)``, a no-op: the driver initialized it already)."""

    def __call__(self, description: dict, lookup: Any) -> InitialValue: ...


class NewContext(Protocol):
    """``new_context() -> EvalContext``: a fresh run of initializers on the task."""

    def __call__(self) -> EvalContext: ...
