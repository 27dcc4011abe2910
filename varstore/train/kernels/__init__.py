"""Fused optimizer update kernels, one per backend, behind one dispatch.

The optimizers call these with arrays that already live on the variable's
device (the guide's rule: ops that change a variable run on its device):

>>> import numpy as np
>>> import devices
>>> from varstore.train import kernels
>>> cpu0 = devices.get_device("/cpu:0")
>>> var, acc = np.ones(3, np.float32), np.zeros(3, np.float32)
>>> kernels.apply_dense("momentum", cpu0, var, np.ones(3, np.float32), {"momentum": acc},
...                     lr=0.5, momentum=0.9)
>>> var.tolist(), acc.tolist()
([0.5, 0.5, 0.5], [1.0, 1.0, 1.0])

Rules and their slots (``RULES``), hyperparameters (``HYPERS``) and flags
(``FLAGS``: ``use_nesterov`` for momentum, ``centered`` for rmsprop, which
then also needs slot ``"mg"``) follow TF 1.x; for Adam the caller folds the
bias correction into ``lr`` (lr * sqrt(1 - beta2^t) / (1 - beta1^t)).

``apply_dense_many`` is one step over many variables of a device: on a CPU
one compiled call per dtype group (``cpu_multi``), elsewhere the backend's
``apply_dense_many`` if it has one, else a loop of ``apply_dense``.

``reference`` holds the float64 ground truth; ``cpu`` the numba kernels;
``cpu_multi`` the multi-tensor CPU step; ``gpu`` the cupy kernels. Backends are imported on first use: importing
this package costs neither numba (0.3 s) nor cupy, and works without cupy.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from devices.backends.ps import register_operations
from devices.errors import InvalidArgumentError

from .rules import FLAGS, HYPERS, RULES, slot_names

__all__ = ["apply_dense", "apply_dense_many", "apply_sparse", "RULES", "HYPERS", "FLAGS", "slot_names",
           "set_threads", "get_threads", "reference", "cpu", "cpu_multi", "gpu"]

_cpu = None  # the cpu module once imported: the hot path then costs one global lookup
_cpu_many = None  # cpu_multi.apply_dense_many once imported


def _cpu_module():
    global _cpu
    if _cpu is None:
        from . import cpu
        _cpu = cpu
    return _cpu


def __getattr__(name: str):
    if name in ("cpu", "cpu_multi", "gpu", "reference"):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def set_threads(n: int | None) -> None:
    """Threads the CPU kernels may use for one big update (None: the CPUs available).

    Results are bitwise identical for any count. See ``cpu.set_threads``.
    """
    _cpu_module().set_threads(n)


def get_threads() -> int:
    """The thread count the CPU kernels use for a big update."""
    return _cpu_module().get_threads()


def _backend(device: Any):
    kind = getattr(device, "kind", None)
    if kind == "cpu":
        return _cpu or _cpu_module()
    if kind == "gpu":
        from . import gpu  # lazy: cupy is optional and slow to import
        return gpu
    raise InvalidArgumentError(
        f"optimizer kernels run on a 'cpu' or 'gpu' device, got {device!r} (kind {kind!r})")


def apply_dense(rule: str, device: Any, var: Any, grad: Any, slots: Mapping[str, Any],
                **hyper: Any) -> None:
    """Apply one dense step of ``rule`` in place on ``var`` and ``slots``, on ``device``.

    ``var``, ``grad`` and every slot are C-contiguous arrays of one shape on
    ``device`` (numpy on a CPU, cupy on a GPU). ``grad`` and slots have the
    var's dtype; float32 is also accepted for a float16/bfloat16 var.
    Hyperparameters are floats; see ``HYPERS`` and ``FLAGS``.

    >>> import numpy as np, devices
    >>> v = np.ones(2, np.float32)
    >>> apply_dense("sgd", devices.get_device("/cpu:0"), v, np.ones(2, np.float32), {}, lr=0.5)
    >>> v.tolist()
    [0.5, 0.5]
    """
    if getattr(device, "kind", None) == "cpu":  # the hot path: no extra call
        (_cpu or _cpu_module()).dense_update(rule, var, grad, slots, hyper)
    else:
        _backend(device).apply_dense(rule, var, grad, slots, **hyper)


def apply_dense_many(rule: str, device: Any, values: Sequence[Any], grads: Sequence[Any],
                     slots: Mapping[str, Sequence[Any]], hyper: Mapping[str, Any],
                     cache: dict | None = None) -> None:
    """One dense step of ``rule`` for every ``values[i]``, with ``grads[i]`` and ``slots[k][i]``.

    The same result as ``apply_dense`` on each in turn (bit for bit on a CPU, where
    it is one compiled call per dtype group; see ``cpu_multi``). The arrays are on
    ``device``; ``slots`` maps each slot name to a list parallel to ``values``.
    ``cache``: a dict the caller keeps across steps (one per optimizer), where a
    backend keeps what it checked while the arrays stay the same objects. The
    caller holds whatever locks guard the arrays, for the whole call.

    A backend with a group kernel provides ``apply_dense_many(rule, values, grads,
    slots, hyper, cache)``; for the others this loops over ``apply_dense``.

    >>> import numpy as np, devices
    >>> vs, gs = [np.ones(2, np.float32), np.ones(1, np.float32)], [np.ones(2, np.float32), np.ones(1, np.float32)]
    >>> apply_dense_many("sgd", devices.get_device("/cpu:0"), vs, gs, {}, {"lr": 0.5})
    >>> [v.tolist() for v in vs]
    [[0.5, 0.5], [0.5]]
    """
    global _cpu_many
    if getattr(device, "kind", None) == "cpu":
        if _cpu_many is None:
            from .cpu_multi import apply_dense_many as many
            _cpu_many = many
        _cpu_many(rule, values, grads, slots, hyper, cache)
        return
    backend = _backend(device)
    many = getattr(backend, "apply_dense_many", None)
    if many is not None:
        many(rule, values, grads, slots, hyper, cache)
        return
    if len(grads) != len(values):
        raise InvalidArgumentError(f"{rule}: {len(grads)} gradients for {len(values)} variables")
    for i, (var, grad) in enumerate(zip(values, grads)):
        backend.apply_dense(rule, var, grad, {k: s[i] for k, s in slots.items()}, **hyper)


def apply_sparse(rule: str, device: Any, var: Any, indices: Any, values: Any,
                 slots: Mapping[str, Any], **hyper: Any) -> None:
    """Apply one sparse step: rows ``indices`` of ``var`` and its slots, duplicates summed.

    ``values`` has shape ``indices.shape + var.shape[1:]``; untouched rows of
    var and slots keep their values ("lazy" semantics). An index outside
    ``[0, var.shape[0])`` raises InvalidArgumentError before anything changes.

    >>> import numpy as np, devices
    >>> v = np.zeros((3, 1), np.float32)
    >>> apply_sparse("sgd", devices.get_device("/cpu:0"), v, np.array([1, 1]),
    ...              np.ones((2, 1), np.float32), {}, lr=1.0)
    >>> v.ravel().tolist()
    [0.0, -2.0, 0.0]
    """
    _backend(device).apply_sparse(rule, var, indices, values, slots, **hyper)


# ps tasks run these for Optimizer updates of their variables (the driver sends them by reference).
register_operations(apply_dense=apply_dense, apply_sparse=apply_sparse)
