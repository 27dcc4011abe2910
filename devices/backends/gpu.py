"""CUDA GPUs through cupy, imported lazily: without cupy or a card, no GPU exists."""
from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

import numpy as np

from ..dtypes import as_dtype
from ..errors import InvalidArgumentError
from ..shapes import as_shape
from .arrays import cupy_module, host_array
from .base import DEFAULT_CHUNK_BYTES, Device


@functools.cache
def gpu_count() -> int:
    """Number of CUDA devices cupy can see (0 without cupy, a driver or a card)."""
    cp = cupy_module()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:  # CUDARuntimeError with no driver/card
        return 0


def pipelined_chunks(nbytes: int, chunk_bytes: int, buffers: list, start_copy, wait) -> Iterator[memoryview]:
    """Double-buffered copy-out: chunk k+1 is in flight while the caller uses chunk k.

    ``start_copy(offset, n, buf)`` enqueues a copy of bytes [offset, offset+n)
    into host buffer ``buf`` and returns a token; ``wait(token)`` blocks until
    that copy is done. Two buffers bound host memory to 2 × chunk_bytes.
    The logic is backend-neutral so CPU tests can drive it.
    """
    offsets = list(range(0, nbytes, chunk_bytes))
    if not offsets:
        return
    pending = []
    waited = 0  # pending[:waited] are complete
    try:
        for k, off in enumerate(offsets[:2]):
            n = min(chunk_bytes, nbytes - off)
            pending.append((start_copy(off, n, buffers[k % 2]), k % 2, n))
        for k in range(len(offsets)):
            token, slot, n = pending[k]
            waited = k + 1  # even if wait() raises: that copy is over, the cleanup skips it
            wait(token)
            yield memoryview(buffers[slot])[:n]
            nxt = k + 2  # the caller is done with `slot`: refill it
            if nxt < len(offsets):
                off = offsets[nxt]
                pending.append((start_copy(off, min(chunk_bytes, nbytes - off), buffers[slot]), slot,
                                min(chunk_bytes, nbytes - off)))
    finally:
        # A caller that stops early (break, an error while writing) must not leave copies in
        # flight: they would keep writing into buffers the next gather reuses.
        for token, _slot, _n in pending[waited:]:
            wait(token)


class GpuDevice(Device):
    """One CUDA device: cupy arrays allocated from cupy's memory pool."""

    kind = "gpu"

    def __init__(self, spec, index: int):
        super().__init__(spec)
        self.index = index
        self._cp = cupy_module()
        self._staging: dict[int, list] = {}
        self._staging_lock = threading.Lock()
        self._staging_owner: int | None = None  # thread holding the shared staging buffers

    @property
    def xp(self):
        return self._cp

    def activate(self):
        return self._cp.cuda.Device(self.index)

    def empty(self, shape, dtype):
        with self.activate():
            a = self._cp.empty(as_shape(shape), dtype=as_dtype(dtype))
        # Track the array, not a.data.mem: cupy's PooledMemory/Memory are Cython classes without
        # weakref support (weakref.finalize raised TypeError on every allocation). cupy views keep
        # their base array alive through .base, so the base dies when the memory is released.
        self._track(a, a.nbytes)
        return a

    def asarray(self, value, dtype=None, copy=False):
        cp = self._cp
        dt = None if dtype is None else as_dtype(dtype)
        with self.activate():
            if isinstance(value, cp.ndarray) or hasattr(value, "__cuda_array_interface__"):
                src = cp.asarray(value)  # cross-device: cupy copies peer-to-peer
            elif hasattr(value, "__dlpack__") and not hasattr(value, "__array__"):
                src = cp.from_dlpack(value)
            else:
                host = host_array(value)
                src = None
                out = self.empty(host.shape, dt or host.dtype)
                # Not np.ascontiguousarray: it makes a 0-d value 1-d, and cupy's set() requires
                # the exact shape (a scalar initial value, Adam's beta powers).
                out.set(np.asarray(host, dtype=out.dtype, order="C"))
                return out
            same_place = src.device.id == self.index
            if same_place and not copy and (dt is None or src.dtype == dt) and src.flags.c_contiguous:
                return src
            out = self.empty(src.shape, dt or src.dtype)
            out[...] = src.astype(out.dtype, copy=False)
            return out

    def to_host(self, array, out=None):
        with self.activate():
            if out is None:
                return self._cp.asnumpy(array)
            if tuple(out.shape) != tuple(array.shape) or out.dtype != array.dtype:
                raise InvalidArgumentError(
                    f"to_host: out has shape {out.shape} dtype {out.dtype}, "
                    f"expected shape {tuple(array.shape)} dtype {array.dtype}")
            if not out.flags.c_contiguous:
                # The chunks are C-order bytes; out.reshape(-1) of a strided array is a copy, so
                # writing through it would leave `out` untouched.
                np.copyto(out, self._cp.asnumpy(array))
                return out
            flat = out.reshape(-1).view(np.uint8)
            pos = 0
            for chunk in self.host_chunks(array):
                flat[pos:pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
                pos += len(chunk)
            return out

    def holds(self, array):
        return isinstance(array, self._cp.ndarray) and array.device.id == self.index

    def _staging_buffers(self, chunk_bytes: int) -> list:
        # Reused across gathers (pinned allocation is slow); one size kept, so memory stays bounded.
        bufs = self._staging.get(chunk_bytes)
        if bufs is None:
            self._staging.clear()
            bufs = self._staging[chunk_bytes] = self._pinned_pair(chunk_bytes)
        return bufs

    def _pinned_pair(self, chunk_bytes: int) -> list:
        return [np.frombuffer(self._cp.cuda.alloc_pinned_memory(chunk_bytes), np.uint8, chunk_bytes)
                for _ in range(2)]

    def host_chunks(self, array, chunk_bytes=DEFAULT_CHUNK_BYTES):
        cp = self._cp
        d2h = cp.cuda.runtime.memcpyDeviceToHost
        with self.activate():
            flat = cp.ascontiguousarray(array).reshape(-1).view(cp.uint8)
            stream = cp.cuda.Stream(non_blocking=True)
            # A non-blocking stream does not wait for the legacy default stream: order the copies
            # after the work already queued on the current stream (the kernels that computed
            # `array`, the ascontiguousarray copy), or they can read bytes not yet written.
            stream.wait_event(cp.cuda.get_current_stream().record())

        def start_copy(off, n, buf):
            with self.activate():
                cp.cuda.runtime.memcpyAsync(buf.ctypes.data, flat.data.ptr + off, n, d2h, stream.ptr)
                ev = cp.cuda.Event(disable_timing=True)
                ev.record(stream)
            return ev

        def wait(ev):
            ev.synchronize()

        me = threading.get_ident()
        if self._staging_owner == me:
            # A gather nested in another on this thread (to_host while consuming host_chunks):
            # waiting for the lock would deadlock, so this one uses buffers of its own.
            yield from pipelined_chunks(flat.nbytes, chunk_bytes, self._pinned_pair(chunk_bytes),
                                        start_copy, wait)
            return
        # One gather at a time per device: two gathers must not share the staging buffers.
        with self._staging_lock:
            self._staging_owner = me
            try:
                bufs = self._staging_buffers(chunk_bytes)
                yield from pipelined_chunks(flat.nbytes, chunk_bytes, bufs, start_copy, wait)
            finally:
                self._staging_owner = None

    def rng(self, seed):
        with self.activate():
            return self._cp.random.default_rng(seed)

    def synchronize(self):
        with self.activate():
            self._cp.cuda.Device(self.index).synchronize()
