"""Parameter-server tasks (``/job:ps/task:N``): arrays held by a Ray actor, one actor per task.

A ps task is a place whose arrays live in another process. ``devices.cluster``
starts or joins a Ray cluster, creates (or finds) one named actor per task and
registers a resolver with :func:`devices.manager.register_remote`; until then
no ps task exists, and soft placement puts such variables on the local CPU.

What lives where:

- The actor (:class:`PsTaskServer`) holds the arrays: numpy on the task's CPU,
  cupy on a GPU the actor was given (``/job:ps/task:1/device:GPU:0``). Every op
  that changes an array runs there: initial values are evaluated there from
  their *description* (data, never code: random values are drawn by the task's
  generator), assigns and optimizer updates run there, and checkpoint shards
  are written and read there.
- The driver holds :class:`RemoteArray` handles (a key, a shape, a dtype). A
  handle's array is deleted on the task when the handle is collected.
- Host data bound for a task (an assigned value, a gradient) is *staged*:
  ``PsDevice.asarray`` checks it and hands back the host array, and the call
  that consumes it sends it. Small data travels inside that call; larger data
  goes through ``ray.put`` (measured: 64 MiB by value 55-70 ms, through
  ``ray.put`` 17-19 ms), many small arrays packed into one buffer.
- Reads come back as Ray's read-only zero-copy views of the object store.

Failures: every wait has a timeout, and Ray's errors for a dead, restarting or
silent task become :class:`~devices.errors.UnavailableError` naming the task.
A restarted task has lost its arrays; any op that needs the old value raises
UnavailableError until the variables are restored (an op that overwrites the
whole array, an assign, an initializer, a restore, recreates it).

This module imports Ray only when a cluster is used, so it loads without Ray.
"""
from __future__ import annotations

import importlib
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..dtypes import as_dtype
from ..errors import InvalidArgumentError, OpError, UnavailableError
from ..shapes import as_shape, num_elements
from ..spec import DeviceSpec
from .base import DEFAULT_CHUNK_BYTES, Device

# Data at least this large (per call) goes through ray.put; smaller data rides inside the call.
BY_VALUE_MAX = 256 << 10
# The update kernels the task runs (imported in the task's process only: devices never imports
# varstore, but a task has to run the library's own kernels where the variables live).
KERNELS_MODULE = "varstore.train.kernels"
DEFAULT_TIMEOUT = 60.0
# Transfers get this much extra time per byte on top of the call timeout (100 MB/s floor).
_SECONDS_PER_BYTE = 1e-8


def _ray():
    import ray  # noqa: PLC0415 - Ray is optional: only a cluster needs it
    return ray


def task_unavailable(task: str, message: str) -> UnavailableError:
    """UnavailableError for ``task`` (``.task`` names it: ``saver.restore(..., device=e.task)``)."""
    err = UnavailableError(message)
    err.task = task
    return err


_valid_dtypes: dict = {}
_ready_dtypes: set = set()  # dtypes a host array may have as it is (supported, native order)


def _valid_dtype(dtype: Any) -> np.dtype:
    """``as_dtype`` (supported dtypes only, native byte order), remembered per dtype: it is on
    the path of every gradient, and numpy's dtype introspection costs microseconds."""
    try:
        return _valid_dtypes[dtype]
    except (KeyError, TypeError):
        pass
    dt = as_dtype(dtype)
    try:
        _valid_dtypes[dtype] = dt
    except TypeError:  # an unhashable spelling
        pass
    if isinstance(dtype, np.dtype) and dtype == dt and dtype.isnative:
        _ready_dtypes.add(dtype)
    return dt


def _ready(a: Any) -> bool:
    """True for a host array that can be sent as it is (the common gradient)."""
    return type(a) is np.ndarray and a.dtype in _ready_dtypes and a.flags.c_contiguous


# =====================================================================================
# Driver side
# =====================================================================================
class RemoteArray:
    """An array on a ps task: its task's key for it, its shape and dtype.

    Carries what code above the device reads off an array: ``shape``, ``dtype``,
    ``ndim``, ``size``, ``nbytes``. ``np.asarray(handle)`` fetches a read-only copy.
    """

    __slots__ = ("device", "key", "shape", "dtype", "__weakref__")

    def __init__(self, device: PsDevice, key: int, shape: tuple, dtype: np.dtype):
        self.device, self.key, self.shape, self.dtype = device, key, tuple(shape), dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return num_elements(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.device.read(self)
        return a if dtype is None else a.astype(dtype)

    def __repr__(self) -> str:
        return f"<RemoteArray on {self.device.name} shape={self.shape} dtype={self.dtype.name}>"


class PendingRead:
    """A value being fetched from a task: ``shape``, ``dtype``, ``nbytes`` now, the values
    (a read-only host array) from ``np.asarray`` (waits). The task took the snapshot when
    the fetch was sent: later writes, sent after it, do not show."""

    __slots__ = ("shape", "dtype", "_wait", "_value")

    def __init__(self, shape: tuple, dtype: np.dtype, wait: Callable[[], np.ndarray]):
        self.shape, self.dtype, self._wait, self._value = tuple(shape), dtype, wait, None

    @property
    def nbytes(self) -> int:
        return num_elements(self.shape) * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def result(self) -> np.ndarray:
        if self._value is None:
            self._value, self._wait = self._wait(), None
        return self._value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.result()
        return a if dtype is None else a.astype(dtype)


class PsTask:
    """The driver's view of one task: its actor, the calls in flight, the errors.

    Shared by the PsDevices of one task (its CPU and GPUs). ``actor`` can be swapped
    (``devices.cluster.restart_task``) without invalidating devices or handles.
    """

    def __init__(self, job: str, index: int, actor: Any, timeout: float = DEFAULT_TIMEOUT,
                 gpus: int = 0):
        self.job, self.index, self.actor = job, index, actor
        self.name = f"/job:{job}/replica:0/task:{index}"
        self.timeout = float(timeout)
        self.gpus = int(gpus)
        self.closed = False
        # Keys are ints (compact in a batch of thousands): a random 30-bit prefix per driver
        # process, so drivers sharing a task (connect()) never collide, then a counter.
        self._counter = itertools.count((int.from_bytes(os.urandom(4), "little") >> 2) << 33)
        self._lock = threading.Lock()
        self._doomed: list[int] = []  # keys of collected handles, deleted with the next call
        self._unchecked: list = []  # calls sent without waiting (whole-array writes): checked later

    def new_key(self) -> int:
        return next(self._counter)

    def release(self, key: int) -> None:
        """A handle was collected: delete its array with the next call (no extra round trip)."""
        with self._lock:
            self._doomed.append(key)

    def submit(self, method: str, *args: Any) -> Any:
        """Send one call (after any pending deletes); returns the ObjectRef of its result."""
        if self.closed:
            raise task_unavailable(self.name, f"ps task {self.name} is unavailable: the cluster was shut down")
        with self._lock:
            doomed, self._doomed = self._doomed, []
        try:
            if doomed:
                self.actor.delete.remote(doomed)
            return getattr(self.actor, method).remote(*args)
        except Exception as e:  # noqa: BLE001 - submission fails when Ray itself is gone
            raise self.unavailable(e) from None

    def wait(self, ref: Any, nbytes: int = 0, timeout: float | None = None) -> Any:
        """The call's result; Ray's failures as UnavailableError, the task's own errors as raised there.

        Calls sent earlier without waiting ran before this one (a task runs one driver's
        calls in order); if one of them failed, its error is raised here.
        """
        limit = (self.timeout if timeout is None else timeout) + nbytes * _SECONDS_PER_BYTE
        ray = _ray()
        try:
            result = ray.get(ref, timeout=limit)
        except Exception as e:  # noqa: BLE001 - mapped below
            with self._lock:
                self._unchecked = []  # this failure says it all (the task is gone or hung)
            raise self.translate(e, limit) from None
        self._check_sent()
        return result

    def send(self, method: str, *args: Any) -> None:
        """A call whose only possible failure is the task's loss: not waited for, checked by
        the next wait (or the next send, once many are outstanding)."""
        ref = self.submit(method, *args)
        with self._lock:
            self._unchecked.append(ref)
            many = len(self._unchecked) > 256
        if many:
            self._check_sent(block=True)

    def _check_sent(self, block: bool = False) -> None:
        with self._lock:
            refs, self._unchecked = self._unchecked, []
        if not refs:
            return
        ray = _ray()
        try:
            if block:
                ray.get(refs, timeout=self.timeout)
                return
            done, pending = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            if done:
                ray.get(done, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001
            raise self.translate(e, self.timeout) from None
        if not block and pending:
            with self._lock:
                self._unchecked[:0] = pending

    def call(self, method: str, *args: Any, nbytes: int = 0) -> Any:
        return self.wait(self.submit(method, *args), nbytes)

    def translate(self, e: BaseException, limit: float = 0.0) -> BaseException:
        ex = _ray().exceptions
        if isinstance(e, ex.RayTaskError):
            cause = getattr(e, "cause", None)
            if isinstance(cause, OpError):
                return cause
            if isinstance(cause, (ex.RayActorError,)):
                return self.unavailable(cause)
            return OpError(f"ps task {self.name}: {type(cause or e).__name__}: {cause or e}")
        if isinstance(e, ex.GetTimeoutError):
            return task_unavailable(self.name, f"ps task {self.name} is unavailable: no answer within "
                                               f"{limit:.1f} s (the task is hung or overloaded)")
        return self.unavailable(e)

    def unavailable(self, e: BaseException) -> UnavailableError:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return task_unavailable(
            self.name, f"ps task {self.name} is unavailable: its process died, restarted or cannot be reached "
                       f"({type(e).__name__}: {first}). If it restarted, restore its variables from the latest "
                       f"checkpoint: saver.restore(sess, path, device='{self.name}')")


def _payload(arrays: list) -> tuple[Any, int]:
    """What to pass for a list of host arrays: the list itself when small, else one ray.put ref."""
    nbytes = sum(a.nbytes for a in arrays)
    if nbytes >= BY_VALUE_MAX:
        return _ray().put(arrays), nbytes
    return arrays, nbytes


# Gradients below this size travel packed (one buffer per dtype, see apply_updates); larger
# ones as arrays of their own. Ray serializes each array of a list as an object of its own,
# ~10 us apiece both ways: for 2000 small gradients that was a third of the step.
PACK_MAX = 64 << 10
# Operand codes in a batch (int64): ~key for an array on the task (negative), i for the i-th
# array sent, PACKED | buffer << 48 | element offset for a packed one.
PACKED = 1 << 62
_OFFSET_MASK = (1 << 48) - 1


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
            return None, _ray().put(host), host.nbytes
        return None, host, host.nbytes

    def _host_of(self, value: Any, dtype: Any = None) -> np.ndarray:
        """``value`` as a C-contiguous host array of a supported dtype (no copy when it is one)."""
        if isinstance(value, np.ndarray):
            host = value
        elif isinstance(value, RemoteArray):
            host = value.device.read(value)
        else:
            from .arrays import host_array
            host = host_array(value)
        want = _valid_dtype(host.dtype if dtype is None else dtype)
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
        if dtype is None and not copy and _ready(value) and self.task is not None:
            return value  # the hot path: a gradient on its way to an update
        self._task()
        dt = None if dtype is None else _valid_dtype(dtype)
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
        data = _ray().put(host) if host.nbytes >= BY_VALUE_MAX else host
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
    def evaluate(self, initial: Any, ctx: Any) -> RemoteArray:
        """Evaluate a deferred initial value on the task from its description (random values
        drawn there). Values it reads from other variables are shipped (by key when they live
        on this task). A value that cannot be described (a function) is evaluated on the
        local CPU and shipped."""
        task = self._task()
        desc = initial.describe()
        if desc is None:
            from ..manager import get_device
            return self._materialize(self._host_of(initial.evaluate(get_device("/cpu:0"), ctx)))
        for v in initial.dependencies():  # initialized_value(): initialize those first
            ctx.ensure(v)
        keys: dict[str, int] = {}
        shipped_names: list[str] = []
        shipped: list[np.ndarray] = []
        for v in _variables_read(initial):
            if v.name in keys or v.name in shipped_names:
                continue
            raw = v.storage.require()
            if isinstance(raw, RemoteArray) and raw.device is self:
                keys[v.name] = raw.key
            else:
                shipped_names.append(v.name)
                shipped.append(self._host_of(v.value()))
        data, nbytes = _payload(shipped)
        # Values that read no variable keep their generator on the task across runs, so running
        # an initializer again continues the random sequence, as it does locally.
        token = None
        if not keys and not shipped:
            token = self._tokens.get(initial)
            if token is None:
                token = self._tokens[initial] = task.new_key()
                weakref.finalize(initial, task.release, token)  # the task forgets it with the value
        key = task.new_key()
        shape, dtype = task.call("create", key, self.where, type(initial).__module__, desc, token,
                                 keys, shipped_names, data, nbytes=nbytes + initial_nbytes(initial))
        return self._handle(key, tuple(shape), np.dtype(dtype))

    # -- batched optimizer update -----------------------------------------------------
    def apply_updates(self, rule: str, items: Sequence, slot_names: Sequence[str], hyper: dict) -> Callable[[], None]:
        """Start one update of many variables as one call on the task; returns the wait.

        ``items``: ``(gradient, variable, [slot variables])``, gradients already staged here
        (dense) or an object with ``values``/``indices`` (sparse). The call carries a few
        int64 columns (keys, operand codes) and the gradients: small ones concatenated into
        one buffer per dtype, large ones as themselves, all in one ``ray.put`` when large.
        """
        task = self._task()
        arrays: list[np.ndarray] = []
        groups: dict = {}  # dtype -> [arrays, elements so far, buffer index]
        var_keys, slot_keys, sparse, ops_a, ops_b = [], [], [], [], []

        def operand(g: Any) -> int:
            if isinstance(g, RemoteArray) and g.device.task is self.task and g.device.where == self.where:
                return ~g.key
            arrays.append(self._host_of(g))
            return len(arrays) - 1

        # Once per variable per step: no calls on the common path.
        last_dtype, grp = None, None
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
            if type(g) is np.ndarray and (g.dtype is last_dtype or g.dtype in _ready_dtypes):
                if g.nbytes < PACK_MAX:  # a dense gradient has its variable's shape: only the offset travels
                    if g.dtype is not last_dtype:
                        last_dtype = g.dtype
                        grp = groups.get(last_dtype)
                        if grp is None:
                            grp = groups[last_dtype] = [[], 0, len(groups)]
                    ops_a.append(PACKED | grp[2] << 48 | grp[1])
                    grp[0].append(g)  # concatenated in C order below, whatever its strides
                    grp[1] += g.size
                else:
                    ops_a.append(len(arrays))
                    arrays.append(g if g.flags.c_contiguous else np.ascontiguousarray(g))
                ops_b.append(0)
            elif hasattr(g, "indices") and hasattr(g, "values"):
                sparse.append(len(ops_a))
                ops_a.append(operand(g.values))
                ops_b.append(operand(g.indices))
            else:
                ops_a.append(operand(g))
                ops_b.append(0)
        batch = (np.array(var_keys, np.int64), np.array(slot_keys, np.int64).reshape(len(var_keys), len(slot_names)),
                 np.array(sparse, np.int64), np.array(ops_a, np.int64), np.array(ops_b, np.int64))
        data = (arrays, [np.concatenate(grp[0], axis=None) for grp in groups.values()])
        nbytes = sum(a.nbytes for a in arrays) + sum(b.nbytes for b in data[1])
        if nbytes >= BY_VALUE_MAX:
            data = _ray().put(data)
        ref = task.submit("apply", self.where, rule, list(slot_names), dict(hyper), batch, data)
        return lambda: task.wait(ref, nbytes)

    # -- checkpoints ---------------------------------------------------------------------
    def write_shard(self, path: str, entries: Sequence[tuple[str, Any]], extra: dict,
                    writer: Callable) -> Callable[[], int]:
        """Start writing ``entries`` (checkpoint name, array here) to ``path`` from the task
        itself with ``writer`` (``varstore.checkpoint.write_checkpoint``, sent by reference);
        returns the wait, which gives the bytes written."""
        task = self._task()
        names = [(name, self._mine(a, f"save ({name})").key) for name, a in entries]
        ref = task.submit("save", os.fspath(path), names, extra, writer)
        total = sum(a.nbytes for _, a in entries)
        return lambda: task.wait(ref, total)

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


def _variables_read(initial: Any) -> list:
    """Variables whose values an initial value reads (initialized_value() ones and plain reads)."""
    return list(initial.variables())


# =====================================================================================
# Task side: the actor
# =====================================================================================
class _Shipped:
    """Stands in for a variable inside the task when an initial value reads one."""

    def __init__(self, name: str, array: Any):
        self.name, self._array = name, array
        self.shape, self.dtype = tuple(array.shape), array.dtype

    def value(self) -> Any:
        return self._array

    def _initialize_in(self, ctx: Any) -> None:
        pass  # the driver initialized it before shipping its value


class PsTaskServer:
    """The actor of one ps task: a dict of arrays and the ops that run on them.

    Calls from one driver run one at a time, in the order sent. Keys unknown to the
    task (it restarted and lost them) raise UnavailableError naming the task.
    """

    def __init__(self, job: str, index: int, gpus: int = 0):
        self.name = f"/job:{job}/replica:0/task:{index}"
        self.gpus = int(gpus)
        self.arrays: dict[int, Any] = {}
        self.initials: dict[int, Any] = {}
        self.incarnation = os.urandom(8).hex()
        self.started = time.time()
        self._devices: dict[tuple, Any] = {}

    # -- helpers ---------------------------------------------------------------------
    def _device(self, where: Sequence) -> Any:
        kind, index = str(where[0]), int(where[1])
        dev = self._devices.get((kind, index))
        if dev is None:
            from .. import manager
            if kind == "GPU" and index >= self.gpus:
                raise InvalidArgumentError(f"{self.name} has {self.gpus} GPU(s); GPU:{index} does not exist")
            dev = manager.get_device(f"/device:{kind}:{index}", soft=False)
            self._devices[(kind, index)] = dev
        return dev

    def _get(self, key: int) -> Any:
        try:
            return self.arrays[key]
        except KeyError:
            raise task_unavailable(
                self.name, f"ps task {self.name} does not hold array {key}: the task restarted (incarnation "
                f"{self.incarnation}, up since {time.strftime('%H:%M:%S', time.localtime(self.started))}) "
                f"and lost its variables. Restore them from the latest checkpoint: "
                f"saver.restore(sess, path, device='{self.name}')") from None

    @staticmethod
    def _operand(dev: Any, key: int | None, data: Any, get: Callable) -> Any:
        return get(key) if key is not None else dev.asarray(data)

    @staticmethod
    def _device_of_array(a: Any) -> Any:
        from ..transfer import device_of
        return device_of(a)

    # -- calls -------------------------------------------------------------------------
    def info(self) -> dict:
        import socket
        return {"task": self.name, "pid": os.getpid(), "incarnation": self.incarnation, "gpus": self.gpus,
                "host": socket.gethostname(), "arrays": len(self.arrays),
                "bytes": int(sum(getattr(a, "nbytes", 0) for a in self.arrays.values())),
                "started": self.started}

    def ping(self) -> str:
        return self.incarnation

    def delete(self, keys: list) -> None:
        for k in keys:
            self.arrays.pop(k, None)
            self.initials.pop(k, None)

    def empty(self, key: int, where: Sequence, shape: list, dtype: str) -> None:
        self.arrays[key] = self._device(where).empty(tuple(shape), np.dtype(dtype))

    def fill(self, key: int, where: Sequence, shape: list, dtype: str, value: Any) -> None:
        a = self._device(where).empty(tuple(shape), np.dtype(dtype))
        a[...] = value
        self.arrays[key] = a

    def put(self, key: int, where: Sequence, data: Any) -> None:
        # Ray hands us a read-only view of its object store: keep our own, writable copy.
        self.arrays[key] = self._device(where).asarray(data, copy=True)

    def copy(self, key: int, src: int, dtype: str) -> None:
        a = self._get(src)
        dev = self._device_of_array(a)
        self.arrays[key] = dev.asarray(a, dtype=np.dtype(dtype), copy=True)

    def get(self, key: int) -> Any:
        a = self._get(key)
        if isinstance(a, np.ndarray):
            return a  # Ray copies it into the object store as the call returns: a snapshot
        return self._device_of_array(a).to_host(a)

    def assign(self, key: int, where: Sequence, shape: list, dtype: str, src: int | None, data: Any) -> None:
        cur = self.arrays.get(key)
        dev = self._device(where)
        value = self._operand(dev, src, data, self._get)
        if cur is None:  # lost with a restart: a whole-array write recreates it
            cur = dev.empty(tuple(shape), np.dtype(dtype))
            self.arrays[key] = cur
        dev.copy_into(cur, value if value.dtype == cur.dtype else dev.asarray(value, dtype=cur.dtype))

    def add(self, key: int, src: int | None, data: Any, sign: int) -> None:
        cur = self._get(key)
        dev = self._device_of_array(cur)
        value = self._operand(dev, src, data, self._get)
        dev.add_into(cur, value if value.dtype == cur.dtype else dev.asarray(value, dtype=cur.dtype), sign)

    def create(self, key: int, where: Sequence, module: str, desc: dict, token: int | None,
               keys: dict, shipped_names: list, data: list) -> tuple:
        dev = self._device(where)
        mod = importlib.import_module(module)
        initial = self.initials.get(token) if token is not None else None
        if initial is None:
            values = {name: _Shipped(name, self._get(k)) for name, k in keys.items()}
            values.update({name: _Shipped(name, a) for name, a in zip(shipped_names, data)})

            def lookup(name: str) -> Any:
                if name not in values:
                    raise InvalidArgumentError(f"{self.name}: initial value reads {name!r}, which was not sent")
                return values[name]
            initial = mod.from_description(desc, lookup)
            if token is not None:
                self.initials[token] = initial
        value = initial.evaluate(dev, mod.EvalContext())
        if not dev.holds(value):
            value = dev.asarray(value, copy=True)
        self.arrays[key] = value
        return list(value.shape), value.dtype.str

    def apply(self, where: Sequence, rule: str, slot_names: list, hyper: dict, batch: tuple, data: tuple) -> None:
        kernels = importlib.import_module(KERNELS_MODULE)
        dev = self._device(where)
        arrays, bufs = data
        # Host data is used as Ray hands it over (read-only, zero-copy) on a CPU; a GPU copies it in.
        on_cpu = dev.kind == "cpu"
        get = self._get

        def operand(code: int, like: Any) -> Any:
            if code < 0:
                return get(~code)
            if code >= PACKED:
                o = code & _OFFSET_MASK
                x = bufs[(code >> 48) & 0x3FFF][o:o + like.size].reshape(like.shape)
            else:
                x = arrays[code]
            return x if on_cpu else dev.asarray(x)
        var_keys, slot_keys, sparse, ops_a, ops_b = batch
        sparse = set(sparse.tolist())
        apply_dense, lookup = kernels.apply_dense, self.arrays.__getitem__
        try:
            for n, (var_key, keys, a, b) in enumerate(zip(var_keys.tolist(), slot_keys.tolist(), ops_a.tolist(),
                                                          ops_b.tolist())):
                var = lookup(var_key)
                slots = dict(zip(slot_names, map(lookup, keys)))
                if n in sparse:
                    kernels.apply_sparse(rule, dev, var, operand(b, None), operand(a, None), slots, **hyper)
                elif a >= PACKED and on_cpu:  # the common case, inline
                    o = a & _OFFSET_MASK
                    apply_dense(rule, dev, var, bufs[(a >> 48) & 0x3FFF][o:o + var.size].reshape(var.shape),
                                slots, **hyper)
                else:
                    apply_dense(rule, dev, var, operand(a, var), slots, **hyper)
        except KeyError as e:  # a key this task lost: say so, naming the task
            get(e.args[0])
            raise

    def save(self, path: str, names: list, extra: dict, writer: Callable) -> int:
        return int(writer(path, [(name, self._get(key)) for name, key in names], extra=extra))

    def load(self, where: Sequence, entries: list, loader: Callable) -> list:
        dev = self._device(where)
        work = [(path, name, np.dtype(dtype), self.arrays.get(key) if keep else None)
                for key, path, name, dtype, keep in entries]
        arrays = loader(dev, work)
        out = []
        for (key, *_rest), a in zip(entries, arrays):
            self.arrays[key] = a
            out.append((list(a.shape), a.dtype.str))
        return out
