"""CUDA GPUs through cupy, imported lazily: without cupy or a card, no GPU exists."""
from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

import numpy as np

from ..dtypes import as_dtype
from ..errors import InvalidArgumentError
from ..shapes import as_shape
from .arrays import check_gpu_dtype, cupy_module, device_array, host_array
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
    """One CUDA device: cupy arrays allocated from cupy's memory pool.

    Every method makes its device current (``with self.activate()``) around what it
    allocates, draws, launches or copies: cupy works on the current device, which for the
    calling thread may be another GPU (a ``/gpu:1`` variable touched from code that runs
    under ``/gpu:0``).

    Stream ordering: work is queued on the caller's current stream. Copies this device
    makes for another thread to read (an async save's snapshot) record an event on that
    stream (a *fence*); a gather makes its own copy stream wait for the fences and for the
    caller's current stream, so it never reads bytes not yet written, whether streams are
    the legacy default stream, per-thread default streams
    (``CUPY_CUDA_PER_THREAD_DEFAULT_STREAM=1``) or a user's non-blocking stream.
    """

    kind = "gpu"

    def __init__(self, spec, index: int):
        super().__init__(spec)
        self.index = index
        self._cp = cupy_module()
        self._staging_free: list[list] = []   # pinned buffer pairs not in use (at most one kept)
        self._staging_bytes = 0
        self._staging_lock = threading.Lock()  # guards the free list only: never held across a yield
        self._fences: dict[int, object] = {}   # stream ptr -> event after the last snapshot there
        self._copy_stream = None               # one non-blocking stream for gathers and loads

    @property
    def xp(self):
        return self._cp

    def activate(self):
        return self._cp.cuda.Device(self.index)

    def empty(self, shape, dtype):
        dt = as_dtype(dtype)
        check_gpu_dtype(self._cp, dt)
        with self.activate():
            a = self._cp.empty(as_shape(shape), dtype=dt)
        # Track the array, not a.data.mem: cupy's PooledMemory/Memory are Cython classes without
        # weakref support (weakref.finalize raised TypeError on every allocation). cupy views keep
        # their base array alive through .base, so the base dies when the memory is released.
        self._track(a, a.nbytes)
        return a

    def zeros(self, shape, dtype):
        a = self.empty(shape, dtype)
        with self.activate():
            a.fill(0)
        return a

    def evaluate(self, initial, ctx):
        # Initializers allocate, fill and draw from this device's generator: all with it current.
        with self.activate():
            return initial.evaluate(self, ctx)

    def copy_into(self, dst, src):
        with self.activate():
            self._cp.copyto(dst, src)

    def add_into(self, dst, src, sign=1):
        with self.activate():
            (self._cp.add if sign > 0 else self._cp.subtract)(dst, src, out=dst)

    def snapshot(self, array):
        with self.activate():
            out = self.asarray(array, copy=True)
            # Another thread (the async save's writer) reads this copy: fence it on this stream.
            stream = self._cp.cuda.get_current_stream()
            ev = self._cp.cuda.Event(disable_timing=True)
            ev.record(stream)
            with self._staging_lock:
                self._fences[stream.ptr] = ev
        return out

    def asarray(self, value, dtype=None, copy=False):
        cp = self._cp
        dt = None if dtype is None else as_dtype(dtype)
        with self.activate():
            src = device_array(cp, value)
            if src is None:
                host = host_array(value)
                out = self.empty(host.shape, dt or host.dtype)
                # Not np.ascontiguousarray: it makes a 0-d value 1-d, and cupy's set() requires
                # the exact shape (a scalar initial value, Adam's beta powers).
                out.set(np.asarray(host, dtype=out.dtype, order="C"))
                return out
            same_place = src.device.id == self.index
            if same_place and not copy and (dt is None or src.dtype == dt) and src.flags.c_contiguous:
                return src
            out = self.empty(src.shape, dt or src.dtype)
            if not same_place:
                # A peer copy (cp.copyto handles devices; an elementwise kernel would need peer
                # access), then the cast here.
                if src.dtype == out.dtype:
                    cp.copyto(out, cp.ascontiguousarray(src) if not src.flags.c_contiguous else src)
                    return out
                with src.device:
                    src = cp.ascontiguousarray(src)
                moved = cp.empty(src.shape, src.dtype)
                cp.copyto(moved, src)
                src = moved
            cp.copyto(out, src, casting="unsafe")
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

    # -- staging: pinned buffer pairs, checked out for one gather and given back after ----------
    def _take_staging(self, chunk_bytes: int) -> list:
        """A pinned pair for one transfer. Never waits: a gather suspended forever (a failed
        write whose traceback keeps the generator alive) only costs its own pair, it cannot
        block another thread's read (issue 15, bug 2)."""
        with self._staging_lock:
            if self._staging_bytes == chunk_bytes and self._staging_free:
                return self._staging_free.pop()
        return self._pinned_pair(chunk_bytes)

    def _give_staging(self, chunk_bytes: int, bufs: list) -> None:
        # Keep one pair of one size (pinned allocation is slow; host memory stays bounded).
        with self._staging_lock:
            if self._staging_bytes != chunk_bytes:
                self._staging_free.clear()
                self._staging_bytes = chunk_bytes
            if not self._staging_free:
                self._staging_free.append(bufs)

    def _pinned_pair(self, chunk_bytes: int) -> list:
        with self.activate():
            return [np.frombuffer(self._cp.cuda.alloc_pinned_memory(chunk_bytes), np.uint8, chunk_bytes)
                    for _ in range(2)]

    def _stream(self):
        """The device's copy stream (non-blocking), made once: not one per gather."""
        if self._copy_stream is None:
            with self.activate():
                s = self._cp.cuda.Stream(non_blocking=True)
            with self._staging_lock:
                if self._copy_stream is None:
                    self._copy_stream = s
        return self._copy_stream

    def _order_after_writers(self, stream) -> None:
        """Make ``stream`` wait for the caller's current stream and every snapshot fence."""
        cp = self._cp
        stream.wait_event(cp.cuda.get_current_stream().record())
        with self._staging_lock:
            fences = list(self._fences.values())
        for ev in fences:
            stream.wait_event(ev)

    def host_chunks(self, array, chunk_bytes=DEFAULT_CHUNK_BYTES):
        cp = self._cp
        d2h = cp.cuda.runtime.memcpyDeviceToHost
        with self.activate():
            flat = cp.ascontiguousarray(array).reshape(-1).view(cp.uint8)
            stream = self._stream()
            # The copy stream does not wait for the default stream (legacy or per-thread) nor for a
            # user's stream: order the copies after the work queued where `array` was computed
            # (the current stream) and after any snapshot another thread took.
            self._order_after_writers(stream)

        def start_copy(off, n, buf):
            with self.activate():
                cp.cuda.runtime.memcpyAsync(buf.ctypes.data, flat.data.ptr + off, n, d2h, stream.ptr)
                ev = cp.cuda.Event(disable_timing=True)
                ev.record(stream)
            return ev

        def wait(ev):
            ev.synchronize()

        bufs = self._take_staging(chunk_bytes)
        try:
            yield from pipelined_chunks(flat.nbytes, chunk_bytes, bufs, start_copy, wait)
        finally:
            # pipelined_chunks waited for every copy it started (also when closed early): the
            # pair is free again. A generator never closed keeps its pair, and no lock.
            self._give_staging(chunk_bytes, bufs)

    def load_into(self, dst, fill) -> None:
        """Fill the existing device array ``dst`` from host chunks, through pinned staging.

        ``fill(buffer)`` returns an iterator of memoryviews of ``dst``'s raw bytes in order,
        each read into ``buffer`` (a pinned host buffer) and valid until the next is
        requested: ``reader.iter_chunks(key, len(buffer), buffer=buffer)``. No full host copy
        and no second device copy: each chunk goes from the pinned buffer straight into
        ``dst``. The copy is waited for before the reader refills the buffer; the copies are
        queued on the caller's current stream, so later work there sees the new values.
        """
        cp = self._cp
        if not self.holds(dst) or not dst.flags.c_contiguous:
            raise InvalidArgumentError(f"load_into: the destination must be a C-contiguous array on {self.name}")
        nbytes = int(dst.nbytes)
        # The gathers' size, whatever the tensor's: the pair is reused, not pinned anew per tensor.
        chunk = DEFAULT_CHUNK_BYTES
        h2d = cp.cuda.runtime.memcpyHostToDevice
        bufs = self._take_staging(chunk)
        ev = None
        with self.activate():
            stream = cp.cuda.get_current_stream()
            dptr = dst.data.ptr
            pos = 0
            it = fill(bufs[0])
            try:
                while True:
                    if ev is not None:
                        ev.synchronize()  # the reader is about to overwrite the buffer
                    view = next(it, None)
                    if view is None:
                        break
                    n = len(view)
                    if pos + n > nbytes:
                        raise InvalidArgumentError(f"load_into: more than {nbytes} bytes for the destination")
                    src = np.frombuffer(view, np.uint8)
                    cp.cuda.runtime.memcpyAsync(dptr + pos, src.ctypes.data, n, h2d, stream.ptr)
                    ev = cp.cuda.Event(disable_timing=True)
                    ev.record(stream)
                    pos += n
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
                if ev is not None:
                    ev.synchronize()  # the buffer goes back to the pool: no copy may still read it
                self._give_staging(chunk, bufs)
        if pos != nbytes:
            raise InvalidArgumentError(f"load_into: {pos} bytes for a destination of {nbytes}")

    def rng(self, seed):
        with self.activate():
            return self._cp.random.default_rng(seed)

    def synchronize(self):
        with self.activate():
            self._cp.cuda.Device(self.index).synchronize()
