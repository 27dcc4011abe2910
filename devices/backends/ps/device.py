"""A CPU or GPU of a ps task as a :class:`~devices.backends.base.Device`: what the driver calls.

Every op that changes an array runs on the task: :class:`PsDevice` turns the Device
interface, initial values (sent as their description) and batched optimizer updates
(encoded by :mod:`.wire`) into calls on the task's :class:`~.client.PsTask`.
"""
from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ...dtypes import as_dtype
from ...errors import InvalidArgumentError
from ...shapes import as_shape, num_elements
from ...spec import DeviceSpec
from ..arrays import host_array
from ..base import DEFAULT_CHUNK_BYTES, Device
from .client import PendingRead, PsTask, RemoteArray, payload, ray_module, task_unavailable
from .operations import registered
from .protocols import EvalContext, InitialValue, Variable
from .stream import plan_layout
from .wire import BY_VALUE_MAX, encode_updates, ready, valid_dtype


class PsDevice(Device):
    """A CPU or GPU of a ps task. Without a task (``task=None``) every method raises
    UnavailableError: the interface exists, the cluster does not.

    >>> d = PsDevice(DeviceSpec.from_string("/job:ps/task:0"))
    >>> d.holds(np.zeros(2))
    False
    """

    kind = "ps"

    def __init__(self, spec: DeviceSpec, task: PsTask | None = None, device_type: str = "CPU",
                 device_index: int = 0):
        super().__init__(spec)
        self.task = task
        self.where = (device_type, int(device_index))
        self._tokens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # -- plumbing ------------------------------------------------------------------
    def _task(self) -> PsTask:
        if self.task is None:
            raise task_unavailable(self.name, f"ps task {self.name}: no cluster is connected")
        return self.task

    def _handle(self, key: int, shape: tuple, dtype: np.dtype) -> RemoteArray:
        h = RemoteArray(self, key, shape, dtype)
        task = self._task()
        weakref.finalize(h, task.release, key)
        self._track(h, h.nbytes)
        return h

    def _mine(self, array: Any, what: str) -> RemoteArray:
        if not isinstance(array, RemoteArray) or array.device is not self:
            raise InvalidArgumentError(f"{what}: expected an array on {self.name}, received {type(array).__name__}")
        return array

    def _source(self, src: Any) -> tuple[int | None, Any, int]:
        """(key, data, nbytes) for an operand: a key on this task, or host data to send."""
        if isinstance(src, RemoteArray) and src.device.task is self.task and src.device.where == self.where:
            return src.key, None, 0
        host = self._host_of(src)
        if host.nbytes >= BY_VALUE_MAX:
            return None, ray_module().put(host), host.nbytes
        return None, host, host.nbytes

    def _host_of(self, value: Any, dtype: Any = None) -> np.ndarray:
        """``value`` as a C-contiguous host array of a supported dtype (no copy when it is one)."""
        if isinstance(value, np.ndarray):
            host = value
        elif isinstance(value, RemoteArray):
            host = value.device.read(value)
        else:
            host = host_array(value)
        want = valid_dtype(host.dtype if dtype is None else dtype)
        if host.dtype != want or not host.flags.c_contiguous:
            out = np.empty(host.shape, want)
            np.copyto(out, host, casting="unsafe")
            host = out
        return host

    # -- the Device interface ------------------------------------------------------
    @property
    def xp(self):
        self._task()
        raise InvalidArgumentError(f"{self.name}: arrays on a ps task live in another process; "
                                   "there is no local array module for them")

    def rng(self, seed):
        self._task()
        raise InvalidArgumentError(f"{self.name}: random values for a ps task are drawn by the task itself")

    def holds(self, array: Any) -> bool:
        return isinstance(array, RemoteArray) and array.device is self

    def empty(self, shape, dtype) -> RemoteArray:
        return self._new("empty", as_shape(shape), as_dtype(dtype))

    def zeros(self, shape, dtype) -> RemoteArray:
        return self._new("fill", as_shape(shape), as_dtype(dtype), 0)

    def _new(self, how: str, shape: tuple, dtype: np.dtype, *extra: Any) -> RemoteArray:
        task = self._task()
        key = task.new_key()
        task.call(how, key, self.where, list(shape), dtype.str, *extra)
        return self._handle(key, shape, dtype)

    def asarray(self, value: Any, dtype: Any = None, copy: bool = False) -> Any:
        """``value`` for this task. An array already here is returned (or copied there, with
        ``copy``). Anything else, without ``copy``, comes back as a checked host array (C
        order, a supported dtype): data *staged* for the op that uses it (an assign, an
        update), which sends it along; with ``copy`` it becomes a new array on the task."""
        if dtype is None and not copy and ready(value) and self.task is not None:
            return value  # the hot path: a gradient on its way to an update
        self._task()
        dt = None if dtype is None else valid_dtype(dtype)
        if isinstance(value, RemoteArray) and value.device is self:
            if not copy and (dt is None or dt == value.dtype):
                return value
            key = self.task.new_key()
            self.task.call("copy", key, value.key, (dt or value.dtype).str)
            return self._handle(key, value.shape, dt or value.dtype)
        host = self._host_of(value, dt)
        return self._materialize(host) if copy else host

    def _materialize(self, host: np.ndarray) -> RemoteArray:
        task = self._task()
        key = task.new_key()
        data = ray_module().put(host) if host.nbytes >= BY_VALUE_MAX else host
        task.call("put", key, self.where, data, nbytes=host.nbytes)
        return self._handle(key, host.shape, host.dtype)

    def read(self, array: Any) -> np.ndarray:
        """The array's values as a read-only host view (zero-copy out of Ray's object store)."""
        return self.start_read(array)()

    def start_read(self, array: Any) -> Callable[[], np.ndarray]:
        """Start fetching; the returned function waits and returns the read-only host view."""
        if isinstance(array, np.ndarray):  # staged host data
            return lambda: array
        h = self._mine(array, "read")
        task = self._task()
        ref = task.submit("get", h.key)
        return lambda: task.wait(ref, h.nbytes)

    def snapshot(self, array: Any) -> PendingRead:
        """An async save's private copy: a fetch sent now (the task snapshots the value as it
        runs it, before any later write) and waited for when the writer reads it. No round
        trip here, and every task serves its fetches in parallel."""
        h = self._mine(array, "snapshot")
        return PendingRead(h.shape, h.dtype, self.start_read(h))

    def to_host(self, array: Any, out: np.ndarray | None = None) -> np.ndarray:
        a = self.read(array)
        if out is None:
            return a
        if tuple(out.shape) != tuple(a.shape) or out.dtype != a.dtype:
            raise InvalidArgumentError(f"to_host: out has shape {out.shape} dtype {out.dtype}, "
                                       f"expected shape {tuple(a.shape)} dtype {a.dtype}")
        np.copyto(out, a)
        return out

    def host_chunks(self, array: Any, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[memoryview]:
        flat = np.ascontiguousarray(self.read(array)).reshape(-1).view(np.uint8)
        for start in range(0, flat.nbytes, chunk_bytes):
            yield memoryview(flat[start:start + chunk_bytes])

    def copy_into(self, dst: Any, src: Any) -> None:
        """``dst[...] = src`` on the task, sent without waiting: shape and dtype are checked
        here, and overwriting the whole array also recreates one a restarted task lost, so
        only the task's loss can fail it, and the next op that waits reports that."""
        d = self._mine(dst, "copy_into")
        key, data, nbytes = self._source(src)
        self._task().send("assign", d.key, self.where, list(d.shape), d.dtype.str, key, data)

    def add_into(self, dst: Any, src: Any, sign: int = 1) -> None:
        d = self._mine(dst, "add_into")
        key, data, nbytes = self._source(src)
        self._task().call("add", d.key, key, data, 1 if sign > 0 else -1, nbytes=nbytes)

    # -- initial values -------------------------------------------------------------
    def evaluate(self, initial: InitialValue, ctx: EvalContext) -> RemoteArray:
        """Evaluate a deferred initial value on the task from its description (random values
        drawn there). Values it reads from other variables are shipped (by key when they live
        on this task). A value that cannot be described (a function) is evaluated on the
        local CPU and shipped."""
        task = self._task()
        desc = initial.describe()
        if desc is None:
            from ...manager import get_device
            return self._materialize(self._host_of(initial.evaluate(get_device("/cpu:0"), ctx)))
        ops = registered("build_initial", "new_context")
        for v in initial.dependencies():  # initialized_value(): initialize those first
            ctx.ensure(v)
        keys: dict[str, int] = {}
        shipped_names: list[str] = []
        shipped: list[np.ndarray] = []
        for v in initial.variables():
            name = v.op.name  # as the value's description names it
            if name in keys or name in shipped_names:
                continue
            raw = v.storage.require()
            if isinstance(raw, RemoteArray) and raw.device is self:
                keys[name] = raw.key
            else:
                shipped_names.append(name)
                shipped.append(self._host_of(v.value()))
        data, nbytes = payload(shipped)
        # Values that read no variable keep their generator on the task across runs, so running
        # an initializer again continues the random sequence, as it does locally.
        token = None
        if not keys and not shipped:
            token = self._tokens.get(initial)
            if token is None:
                token = self._tokens[initial] = task.new_key()
                weakref.finalize(initial, task.release, token)  # the task forgets it with the value
        key = task.new_key()
        shape, dtype = task.call("create", key, self.where, ops, desc, token,
                                 keys, shipped_names, data, nbytes=nbytes + initial_nbytes(initial))
        return self._handle(key, tuple(shape), np.dtype(dtype))

    # -- batched optimizer update -----------------------------------------------------
    def apply_updates(self, rule: str, items: Sequence[tuple[Any, Variable, Sequence[Variable]]],
                      slot_names: Sequence[str], hyper: dict) -> Callable[[], None]:
        """Start one update of many variables as one call on the task; returns the wait.

        ``items``: ``(gradient, variable, [slot variables])``, gradients already staged here
        (dense) or an object with ``values``/``indices`` (sparse). The call carries a few
        int64 columns (keys, operand codes) and the gradients: small ones concatenated into
        one buffer per dtype, large ones as themselves, all in one ``ray.put`` when large
        (:func:`.wire.encode_updates`; the task decodes it with :func:`.wire.decode_updates`).
        """
        task = self._task()
        ops = registered("apply_dense", "apply_sparse")
        var_keys, slot_keys, grads = [], [], []
        # Once per variable per step: no calls on the common path.
        for g, var, slots in items:
            h = var.storage.array
            if type(h) is not RemoteArray or h.device is not self:
                h = self._mine(var.storage.require(), f"apply_gradients ({var.name})")
            var_keys.append(h.key)
            for sv in slots:
                h = sv.storage.array
                if type(h) is not RemoteArray or h.device is not self:
                    h = self._mine(sv.storage.require(), f"apply_gradients ({sv.name})")
                slot_keys.append(h.key)
            grads.append(g)
        batch, data, nbytes = encode_updates(var_keys, slot_keys, len(slot_names), grads, self._local_key,
                                             self._host_of)
        sender = task.sender() if nbytes >= BY_VALUE_MAX else None
        if sender is not None:  # a task on another node: the bytes go straight to it, once
            layout, segments, total = plan_layout(data)
            with task.stream_lock:  # calls and their bytes in the same order, whatever the threads
                ref = task.submit("apply", self.where, ops, rule, list(slot_names), dict(hyper), batch,
                                  {"stream": sender.stream_id, "layout": layout, "nbytes": total,
                                   "timeout": task.timeout + total * 1e-8})
                sent = sender.send(segments)

            def wait() -> None:
                try:
                    sent(task.timeout + total * 1e-8)
                except BaseException as e:  # the task is gone, or hung: the call says which
                    task.drop_sender()
                    task.wait(ref, nbytes)
                    raise task.unavailable(e) from None
                try:
                    task.wait(ref, nbytes)
                except BaseException:
                    task.drop_sender()  # a failed call may have left bytes unread: start afresh
                    raise
            return wait
        if nbytes >= BY_VALUE_MAX:
            data = ray_module().put(data)
        ref = task.submit("apply", self.where, ops, rule, list(slot_names), dict(hyper), batch, data)
        return lambda: task.wait(ref, nbytes)

    def _local_key(self, a: Any) -> int | None:
        """The key of an operand already on this device's task and place (sent by key), else None."""
        if isinstance(a, RemoteArray) and a.device.task is self.task and a.device.where == self.where:
            return a.key
        return None

    # -- recovery ------------------------------------------------------------------------
    def start_recover(self) -> Callable[[], Callable[[], Any] | None]:
        """Start checking that this device's task answers (before a restore). The returned
        wait gives None when it does, else the wait of its restart on a live node. Many
        devices are checked, then restarted, at once::

            finishes = [w() for w in [d.start_recover() for d in devices]]
            for f in finishes:
                if f is not None:
                    f()
        """
        return self._task().start_recover()

    # -- checkpoints ---------------------------------------------------------------------
    def write_shard(self, path: str, entries: Sequence[tuple[str, Any]], extra: dict,
                    writer: Callable) -> Callable[[], int]:
        """Start writing ``entries`` (checkpoint name, array here) to ``path`` from the task
        itself with ``writer`` (the checkpoint format's writer, sent by reference);
        returns the wait, which gives the bytes written."""
        task = self._task()
        names = [(name, self._mine(a, f"save ({name})").key) for name, a in entries]
        # The task writes on its own node: it must see the directory this process sees (a
        # filesystem every node mounts at the same path). A probe file written here, which
        # the task looks for before writing, tells (nothing else does: a missing directory
        # is created there, and the shard would land on that node's disk).
        path = os.fspath(path)
        token = os.urandom(16).hex()
        probe = os.path.join(os.path.dirname(os.path.abspath(path)), f".varstore-probe-{token}")
        with open(probe, "x") as f:
            f.write(token)
        try:
            ref = task.submit("save", path, names, extra, writer, (probe, token))
        except BaseException:
            os.unlink(probe)
            raise
        total = sum(a.nbytes for _, a in entries)

        def wait() -> int:
            try:
                return task.wait(ref, total)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(probe)
        return wait

    def load_tensors(self, entries: Sequence[tuple[Any | None, str, str, tuple, Any]],
                     loader: Callable) -> Callable[[], list]:
        """Start loading tensors from checkpoint files into this task, in the task.

        ``entries``: ``(current array or None, file path, tensor name, shape, dtype)``.
        ``loader(device, [(path, name, dtype, current array or None)])`` runs in the task and
        returns the arrays (the current one, filled in place, where it fits). The wait gives
        the handles, the current handle reused where its array was kept.
        """
        task = self._task()
        sent, handles = [], []
        for cur, path, name, shape, dtype in entries:
            dtype = as_dtype(dtype)
            if isinstance(cur, RemoteArray) and cur.device is self \
                    and cur.shape == tuple(shape) and cur.dtype == dtype:
                key = cur.key
                handles.append(cur)
            else:
                key = task.new_key()
                handles.append(None)
            sent.append((key, os.fspath(path), name, dtype.str, cur is handles[-1] and cur is not None))
        ref = task.submit("load", self.where, sent, loader)
        total = sum(num_elements(tuple(e[3])) * as_dtype(e[4]).itemsize for e in entries)

        def wait() -> list:
            shapes = task.wait(ref, total)
            out = []
            for (key, _p, _n, _d, _k), h, (shape, dtype) in zip(sent, handles, shapes):
                out.append(h if h is not None else self._handle(key, tuple(shape), np.dtype(dtype)))
            return out
        return wait


def initial_nbytes(initial: Any) -> int:
    try:
        return num_elements(tuple(initial.shape)) * np.dtype(initial.dtype).itemsize
    except Exception:  # noqa: BLE001 - only a timeout hint
        return 0

