"""The operations a ps task runs on its arrays, registered by the library above devices.

A task holds arrays; what to compute on them (an optimizer's update, an initial value
rebuilt from its description) belongs to the library that defines variables. It
registers those functions here when it is imported::

    register_operations(apply_dense=kernels.apply_dense, apply_sparse=kernels.apply_sparse)
    register_operations(build_initial=from_description, new_context=RunContext)

and the driver's PsDevice sends the registered :class:`Operations` with each call that
needs them. Ray sends functions by reference (their module and name), so a task imports
the library's modules itself when the first such call arrives; devices never names them.

>>> ops = registered()
>>> sorted(Operations._fields)
['apply_dense', 'apply_sparse', 'build_initial', 'new_context']
"""
from __future__ import annotations

import threading
from typing import NamedTuple

from ...errors import FailedPreconditionError, InvalidArgumentError
from .protocols import ApplyDense, ApplySparse, BuildInitial, NewContext


class Operations(NamedTuple):
    """The functions a task calls (None until registered). Sent with a call, so they must be
    importable by module and name in the task's process (module-level functions, classes)."""

    apply_dense: ApplyDense | None = None
    apply_sparse: ApplySparse | None = None
    build_initial: BuildInitial | None = None
    new_context: NewContext | None = None


_lock = threading.Lock()
_registered = Operations()

_WHAT = {
    "apply_dense": "optimizer updates", "apply_sparse": "optimizer updates",
    "build_initial": "initial values", "new_context": "initial values",
}


def register_operations(**ops: object) -> Operations:
    """Register (or replace) some of the operations by name; returns the whole set.

    >>> register_operations(nothing=len)
    Traceback (most recent call last):
    ...
    devices.errors.InvalidArgumentError: register_operations: unknown operation(s) ['nothing'] \
(known: apply_dense, apply_sparse, build_initial, new_context)
    """
    global _registered
    unknown = sorted(set(ops) - set(Operations._fields))
    if unknown:
        raise InvalidArgumentError(f"register_operations: unknown operation(s) {unknown} "
                                   f"(known: {', '.join(Operations._fields)})")
    bad = sorted(name for name, fn in ops.items() if fn is not None and not callable(fn))
    if bad:
        raise InvalidArgumentError(f"register_operations: {bad} must be callable")
    with _lock:
        _registered = _registered._replace(**ops)
        return _registered


def registered(*needed: str) -> Operations:
    """The registered operations; FailedPreconditionError when one of ``needed`` is missing."""
    ops = _registered
    missing = [name for name in needed if getattr(ops, name) is None]
    if missing:
        raise FailedPreconditionError(
            f"ps tasks cannot run {_WHAT[missing[0]]}: no {', '.join(missing)} operation is registered "
            "(the library that defines variables registers them with "
            "devices.backends.ps.register_operations when it is imported)")
    return ops
