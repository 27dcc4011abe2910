"""The Device interface every backend implements, its memory accounting, and the optional
hooks of a remote backend as Protocols (:class:`BatchedUpdates`, :class:`AsyncReads`,
:class:`ShardWriter`, :class:`TensorLoader`; :class:`RemoteHooks` is all four).

A Device without a hook has the attribute set to None, which ``isinstance`` against a
runtime-checkable Protocol reads as "not implemented"; callers may probe either way:

>>> from devices import get_device
>>> cpu = get_device("/cpu:0")
>>> isinstance(cpu, BatchedUpdates), getattr(cpu, "apply_updates", None)
(False, None)
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..spec import DeviceSpec

DEFAULT_CHUNK_BYTES = 64 << 20  # staging size for device->host gathers


class Device:
    """A place that holds arrays. Subclasses are small: they name the array
    module and the few operations that differ between places.

    >>> from devices import get_device
    >>> d = get_device("/cpu:0")
    >>> d.zeros((2, 3), "float32").shape
    (2, 3)
    """

    kind: str = "abstract"

    def __init__(self, spec: DeviceSpec):
        self.spec = spec
        self.name = spec.to_string()
        # Reentrant: _release runs from garbage collection, which may fire inside _track.
        self._lock = threading.RLock()
        self._bytes_in_use = 0
        self._peak_bytes = 0

    # -- what each backend provides ------------------------------------------
    @property
    def xp(self) -> Any:
        """The array module (numpy, cupy) for code that runs on this device."""
        raise NotImplementedError

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        raise NotImplementedError

    def asarray(self, value: Any, dtype: Any = None, copy: bool = False) -> Any:
        """``value`` (from any place or library) as an array on this device."""
        raise NotImplementedError

    def to_host(self, array: Any, out: np.ndarray | None = None) -> np.ndarray:
        """A host (numpy) copy of ``array``, written into ``out`` when given."""
        raise NotImplementedError

    def holds(self, array: Any) -> bool:
        """True when ``array`` already lives on this device."""
        raise NotImplementedError

    def host_chunks(self, array: Any, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[memoryview]:
        """Yield the array's raw C-order bytes as host memoryviews of at most
        ``chunk_bytes``. Each view is valid until the next one is requested."""
        raise NotImplementedError

    def rng(self, seed: int | None) -> Any:
        """A random generator that draws on this device (numpy/cupy Generator API)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued work on this device (a no-op where work is synchronous)."""

    def activate(self) -> AbstractContextManager:
        """Make this device current for code that allocates implicitly (cupy)."""
        return contextlib.nullcontext(self)

    # -- shared (numpy and cupy share this API; a remote backend overrides) -----
    def copy_into(self, dst: Any, src: Any) -> None:
        """``dst[...] = src`` in place; both already on this device."""
        self.xp.copyto(dst, src)

    def add_into(self, dst: Any, src: Any, sign: int = 1) -> None:
        """``dst += src`` (or ``-=`` with sign -1) in place; both already on this device."""
        (self.xp.add if sign > 0 else self.xp.subtract)(dst, src, out=dst)

    def read(self, array: Any) -> Any:
        """A locally readable array for ``array`` (the array itself; a remote backend fetches)."""
        return array

    def snapshot(self, array: Any) -> Any:
        """A private copy of ``array`` that later writes to it do not change (an async save's view)."""
        return self.asarray(array, copy=True)

    def evaluate(self, initial: Any, ctx: Any) -> Any:
        """Evaluate a deferred initial value here (a remote backend ships its description)."""
        return initial.evaluate(self, ctx)

    # -- optional hooks of a remote backend: None here (the Protocols below say what they are;
    # callers probe with getattr(dev, name, None) or isinstance(dev, Protocol)) -----------------
    apply_updates = None
    start_read = None
    write_shard = None
    load_tensors = None

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        a = self.empty(shape, dtype)
        a[...] = 0
        return a

    @property
    def memory_in_use(self) -> int:
        """Bytes held by live arrays this device allocated."""
        return self._bytes_in_use

    @property
    def peak_memory(self) -> int:
        return self._peak_bytes

    def _track(self, owner: Any, nbytes: int) -> None:
        """Count ``nbytes`` until ``owner`` (the allocation) is collected."""
        if nbytes <= 0:
            return
        with self._lock:
            self._bytes_in_use += nbytes
            self._peak_bytes = max(self._peak_bytes, self._bytes_in_use)
        weakref.finalize(owner, self._release, nbytes)

    def _release(self, nbytes: int) -> None:
        with self._lock:
            self._bytes_in_use -= nbytes

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# -- the optional hooks, as Protocols ------------------------------------------------------------
@runtime_checkable
class BatchedUpdates(Protocol):
    """A device that runs one optimizer step for many variables as one batched call
    (``Optimizer._apply_on``), rather than one kernel call per variable."""

    def apply_updates(self, rule: str, items: Sequence[tuple[Any, Any, Sequence[Any]]],
                      slot_names: Sequence[str], hyper: dict) -> Callable[[], None]:
        """Start the update: ``items`` are ``(gradient, variable, [slot variables])``, the
        variables' values read through ``.storage``; returns the wait for it."""
        ...


@runtime_checkable
class AsyncReads(Protocol):
    """A device whose reads can be started on many devices before any is waited for
    (``Saver.save`` gathers from every remote device at once)."""

    def start_read(self, array: Any) -> Callable[[], Any]:
        """Begin a fetch; the returned wait gives the host value (read-only)."""
        ...


@runtime_checkable
class ShardWriter(Protocol):
    """A device that writes a checkpoint shard where its arrays live (``Saver(sharded=True)``)."""

    def write_shard(self, path: str, entries: Sequence[tuple[str, Any]], extra: dict,
                    writer: Callable) -> Callable[[], int]:
        """Start writing ``entries`` (name, array here) to ``path`` with ``writer`` (sent by
        reference); the wait gives the bytes written."""
        ...


@runtime_checkable
class TensorLoader(Protocol):
    """A device that reads checkpoint tensors where its arrays live (``Saver.restore``)."""

    def load_tensors(self, entries: Sequence[tuple[Any, str, str, tuple, Any]],
                     loader: Callable) -> Callable[[], list]:
        """Start loading ``(current array or None, file, name, shape, dtype)`` entries with
        ``loader`` (run where the arrays live); the wait gives the arrays."""
        ...


@runtime_checkable
class RemoteHooks(BatchedUpdates, AsyncReads, ShardWriter, TensorLoader, Protocol):
    """Every optional hook: what a backend whose arrays live in another process offers (ps)."""
