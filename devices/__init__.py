"""devices: places and arrays. Turns a device string into a place that holds arrays.

"/cpu:0" is numpy, "/gpu:N" is cupy (when a card exists), "/job:ps/task:N"
is a parameter-server task (when a cluster is connected). A place this
machine cannot serve falls back to the CPU under soft placement, so GPU
code runs in CPU-only CI.

>>> import devices
>>> with devices.device("/gpu:0"):
...     spec = devices.current_device()
>>> spec.to_string()
'/device:GPU:0'

``devices.cluster`` (parameter-server tasks on Ray) loads on first use, so that
``import devices`` costs neither the ps backend nor Ray:
``import devices; devices.cluster.start(ps_tasks=2)``. So does ``devices.bfloat16``
(ml_dtypes).
"""
from typing import TYPE_CHECKING

from . import errors
from .backends.base import Device
from .dtypes import as_dtype
from .errors import (
                     DataLossError,
                     FailedPreconditionError,
                     InvalidArgumentError,
                     NotFoundError,
                     OpError,
                     UnavailableError,
)
from .manager import PlacementWarning, get_device, list_devices, memory_summary, set_soft_placement, soft_placement
from .scope import OpDescription, current_device, device, resolve
from .shapes import as_shape
from .spec import DeviceSpec
from .transfer import device_of, gather, host_chunks, to_host

if TYPE_CHECKING:
    # Loaded on first use (below); to a type checker they are what they are, and there is no
    # module __getattr__, so a misspelled `devices.X` is an error rather than Any.
    from . import cluster
    from .dtypes import bfloat16

__all__ = [
    "DeviceSpec", "device", "current_device", "get_device", "list_devices", "set_soft_placement",
    "soft_placement", "to_host", "gather", "host_chunks", "device_of", "memory_summary",
    "PlacementWarning", "OpDescription", "resolve", "Device", "as_dtype", "as_shape", "bfloat16",
    "errors", "OpError", "InvalidArgumentError", "FailedPreconditionError", "NotFoundError",
    "DataLossError", "UnavailableError",
]

_LAZY = frozenset({"cluster", "bfloat16"})

if not TYPE_CHECKING:
    def __getattr__(name: str):
        """``devices.cluster`` without importing it (or Ray) at ``import devices``; ``devices.bfloat16``
        without ml_dtypes (0.5-1 s to import) until it is used."""
        if name == "cluster":
            import importlib
            return importlib.import_module(f"{__name__}.{name}")
        if name == "bfloat16":
            from . import dtypes
            return dtypes.bfloat16
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
