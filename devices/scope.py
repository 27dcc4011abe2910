"""``with device(spec | function | None)``: a thread-local stack of placement scopes.

Resolution walks the stack from the innermost scope outwards, as TF 1.x
does: a spec fills the fields the inner scopes left unset, a device
function receives the op and returns its spec, and ``device(None)`` stops
the walk (outer scopes no longer apply).

>>> with device("/device:GPU:0"), device("/job:worker"):
...     current_device().to_string()
'/job:worker/device:GPU:0'
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgumentError
from .spec import DeviceSpec, SpecLike

_RESET = object()  # the stack entry pushed by device(None)


@dataclass(frozen=True)
class OpDescription:
    """What a device function is told about the op being placed.

    ``type``/``device`` mirror TF's ``op.type``/``op.device`` so TF-style
    device functions work unchanged.
    """

    kind: str
    name: str = ""
    shape: tuple | None = None
    dtype: Any = None
    requested: DeviceSpec = DeviceSpec()

    @property
    def type(self) -> str:
        return self.kind

    @property
    def device(self) -> str:
        return self.requested.to_string()


DeviceFunction = Callable[[OpDescription], DeviceSpec | str | None]

_local = threading.local()


def _stack() -> list:
    s = getattr(_local, "stack", None)
    if s is None:
        s = _local.stack = []
    return s


def resolve(op: OpDescription, call_functions: bool = True) -> DeviceSpec:
    """The spec the current scopes request for ``op`` (its own ``requested`` spec wins)."""
    spec = op.requested
    for entry in reversed(_stack()):
        if entry is _RESET:
            break
        if isinstance(entry, DeviceSpec):
            spec = entry.make_merged_spec(spec)
        elif call_functions:
            out = entry(OpDescription(op.kind, op.name, op.shape, op.dtype, spec))
            if out is not None:
                spec = DeviceSpec.from_string(out)
    return spec


def current_device(kind: str = "Op") -> DeviceSpec:
    """The spec an op of ``kind`` created here would request."""
    return resolve(OpDescription(kind))


@contextlib.contextmanager
def device(spec: SpecLike | DeviceFunction) -> Iterator[None]:
    """Place ops created in this block (``spec``: a string, DeviceSpec, function or None).

    Entering a scope that names a local GPU also makes it cupy's current
    device, so the user's own cupy code allocates there.
    """
    if spec is None:
        entry = _RESET
    elif callable(spec) and not isinstance(spec, DeviceSpec):
        entry = spec
    elif isinstance(spec, (str, DeviceSpec)):
        entry = DeviceSpec.from_string(spec)
    else:
        raise InvalidArgumentError(
            f"device(): expected a device string, DeviceSpec, function or None, received {spec!r}")
    stack = _stack()
    stack.append(entry)
    depth = len(stack)
    try:
        with _activate_for(entry):
            yield
    finally:
        # Unwind to our depth even if an inner scope leaked (a generator left open).
        del stack[depth - 1:]


def _activate_for(entry: Any) -> contextlib.AbstractContextManager:
    if not isinstance(entry, DeviceSpec):
        return contextlib.nullcontext()
    # Device functions are not called here: they place ops, and no op is being created.
    spec = resolve(OpDescription("Op"), call_functions=False)
    if spec.device_type != "GPU" or spec.job not in (None, "localhost"):
        return contextlib.nullcontext()
    from . import manager  # late: manager imports the backends
    if not manager.exists(spec):
        return contextlib.nullcontext()
    return manager.get_device(spec).activate()
