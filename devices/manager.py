"""Resolve a spec to a Device: what exists, soft placement, caching, accounting.

>>> from devices import get_device, list_devices
>>> get_device("/cpu:0").name
'/device:CPU:0'
>>> list_devices()[0]
'/device:CPU:0'
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable

from .backends.base import Device
from .backends.cpu import CpuDevice
from .backends.gpu import GpuDevice, gpu_count
from .errors import InvalidArgumentError
from .spec import DeviceSpec, SpecLike

log = logging.getLogger("devices")

LOCAL_JOBS = (None, "localhost")


class PlacementWarning(UserWarning):
    """A requested device does not exist here; the variable went to the CPU."""


_lock = threading.RLock()
_cache: dict[DeviceSpec, Device] = {}
_warned: set[str] = set()
_soft: bool | None = None  # None: follow VARSTORE_SOFT_PLACEMENT
# Set by devices.cluster: maps a remote spec to a Device, or None when the task does not exist.
_remote: Callable[[DeviceSpec], Device | None] | None = None

CPU_SPEC = DeviceSpec(device_type="CPU", device_index=0)


def set_soft_placement(enabled: bool | None) -> None:
    """Turn soft placement on or off for this process (None: back to the environment).

    >>> set_soft_placement(False); set_soft_placement(None)
    """
    global _soft
    _soft = None if enabled is None else bool(enabled)


def soft_placement() -> bool:
    """Whether a missing device falls back to the CPU (default True)."""
    if _soft is not None:
        return _soft
    return os.environ.get("VARSTORE_SOFT_PLACEMENT", "1").strip().lower() not in ("0", "false", "no", "off")


def register_remote(resolver: Callable[[DeviceSpec], Device | None] | None) -> None:
    """Install (or remove, with None) the resolver for non-local jobs; clears the cache."""
    global _remote
    with _lock:
        _remote = resolver
        for spec in [s for s in _cache if s.job not in LOCAL_JOBS]:
            del _cache[spec]


def list_devices() -> list[str]:
    """Canonical specs of the local devices, CPU first."""
    return [CPU_SPEC.to_string()] + [f"/device:GPU:{i}" for i in range(gpu_count())]


def _local_spec(spec: DeviceSpec) -> DeviceSpec | None:
    """The local device a spec names, or None when this machine has no such device."""
    if spec.replica not in (None, 0) or spec.task not in (None, 0):
        return None
    kind = spec.device_type or "CPU"
    index = spec.device_index or 0
    if kind == "CPU" and index == 0:
        return CPU_SPEC
    if kind == "GPU" and index < gpu_count():
        return DeviceSpec(device_type="GPU", device_index=index)
    return None


def _make(spec: DeviceSpec) -> Device | None:
    if spec.job in LOCAL_JOBS:
        local = _local_spec(spec)
        if local is None:
            return None
        dev = _cache.get(local)
        if dev is None:
            dev = CpuDevice(local) if local.device_type == "CPU" else GpuDevice(local, local.device_index)
            _cache[local] = dev
        return dev
    return _remote(spec) if _remote is not None else None


def get_device(spec: SpecLike = None, *, soft: bool | None = None) -> Device:
    """The Device for ``spec`` (a string, DeviceSpec or None for the CPU).

    With soft placement a spec this machine cannot serve resolves to the CPU
    and warns once per spec; without it, InvalidArgumentError lists the
    devices that exist.
    """
    spec = DeviceSpec.from_string(spec)
    with _lock:
        dev = _cache.get(spec)
        if dev is not None:
            return dev
        dev = _make(spec)
        if dev is not None:
            _cache[spec] = dev
            return dev
    text = spec.to_string()
    if not (soft_placement() if soft is None else soft):
        raise InvalidArgumentError(
            f"Cannot assign a device for {text!r}: no such device here (soft placement is off). "
            f"Devices that exist: {list_devices()}")
    with _lock:
        first = text not in _warned
        _warned.add(text)
    if first:
        warnings.warn(
            f"device {text!r} does not exist here; placing on {CPU_SPEC.to_string()} (soft placement)",
            PlacementWarning, stacklevel=3)
    log.info("soft placement: %s -> %s", text, CPU_SPEC.to_string())
    return get_device(CPU_SPEC)


def exists(spec: SpecLike) -> bool:
    """True when ``spec`` names a device this process can use (no fallback)."""
    spec = DeviceSpec.from_string(spec)
    with _lock:
        return spec in _cache or _make(spec) is not None


def memory_summary() -> str:
    """A table of bytes held per device by arrays varstore allocated.

    >>> print(memory_summary().splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
    device   in use   peak
    """
    with _lock:
        devs = sorted({id(d): d for d in _cache.values()}.values(), key=lambda d: d.name)
    if not any(d.spec == CPU_SPEC for d in devs):
        devs.insert(0, get_device(CPU_SPEC))
    rows = [("device", "in use", "peak")] + [(d.name, _fmt(d.memory_in_use), _fmt(d.peak_memory)) for d in devs]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}   {b:>{w[1]}}   {c:>{w[2]}}" for a, b, c in rows)


def _fmt(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
