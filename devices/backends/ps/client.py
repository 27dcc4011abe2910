"""The driver's side of a ps task: the task's actor and its calls, array handles, pending reads.

:class:`PsTask` sends calls to one task's actor (Ray), waits with timeouts and turns
Ray's failures into :class:`~devices.errors.UnavailableError` naming the task;
:class:`RemoteArray` is the driver's handle to an array the task holds (its array is
deleted on the task when the handle is collected); :class:`PendingRead` a fetch in flight.

Ray is imported only when a call is made, so this module loads without Ray.
"""
from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import OpError, UnavailableError
from ...shapes import num_elements
from .wire import BY_VALUE_MAX

if TYPE_CHECKING:
    from .device import PsDevice

DEFAULT_TIMEOUT = 60.0
# Transfers get this much extra time per byte on top of the call timeout (100 MB/s floor).
_SECONDS_PER_BYTE = 1e-8


def ray_module() -> Any:
    """Ray, imported on first use."""
    import ray  # noqa: PLC0415 - Ray is optional: only a cluster needs it
    return ray


def task_unavailable(task: str, message: str, tasks: list[str] | None = None,
                     node: str | None = None) -> UnavailableError:
    """UnavailableError for ``task``: ``.task`` names it (``saver.restore(..., device=e.task)``),
    ``.tasks`` every task lost with it (its node's), ``.node`` its node's id (None: unknown)."""
    err = UnavailableError(message)
    err.task, err.tasks, err.node = task, list(tasks or [task]), node
    return err


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
        # Where the task runs (set by devices.cluster) and the cluster's hooks: why the task
        # is unavailable (its node is gone...), and how to bring it back (restart it).
        self.node_id: str | None = None
        self.node_address: str | None = None
        self.explain: Callable[[PsTask], tuple[str, list[str], str | None]] | None = None
        self.recoverer: Callable[[PsTask, Any], Callable[..., Any] | None] | None = None
        # The direct byte stream to the task for large gradients (.stream): None until first
        # used; ``streaming``: None = when the task is on another node than this process,
        # True/False = always/never (VARSTORE_PS_STREAM=0 turns it off).
        self.streaming: bool | None = None if os.environ.get("VARSTORE_PS_STREAM", "") != "0" else False
        self._sender: Any = None
        self._sender_actor: Any = None
        self._here: str | None = None
        self.stream_lock = threading.Lock()  # held from a call's submission to its bytes' queueing
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
        ray = ray_module()
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
        ray = ray_module()
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
        ex = ray_module().exceptions
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
        why, tasks, node = self.explain(self) if self.explain is not None else ("", [self.name], self.node_id)
        where = f" on node {node[:12]} ({self.node_address or '?'})" if node else ""
        if why:
            return task_unavailable(self.name, f"ps task {self.name}{where} is unavailable: {why} "
                                               f"({type(e).__name__}: {first})", tasks, node)
        return task_unavailable(
            self.name, f"ps task {self.name}{where} is unavailable: its process died, restarted or cannot be "
                       f"reached ({type(e).__name__}: {first}). Restore from the latest checkpoint: "
                       f"saver.restore(sess, path) restarts a lost task and restores every variable "
                       f"(device='{self.name}': only this task's)", tasks, node)

    def sender(self) -> Any:
        """The stream to this task (:class:`.stream.Sender`) when gradients should take it, else
        None: Ray's object store carries them. Opened on first use, reopened after a failure
        or a restart (a new actor has a new listener)."""
        if self.streaming is False or self.closed:
            return None
        if self.streaming is None:
            here = self._driver_node()
            if self.node_id is None or here is None or here == self.node_id:
                return None  # same node: ray.put is one copy into shared memory, read in place
        s = self._sender
        if s is not None and not s.broken and self._sender_actor is self.actor:
            return s
        if s is not None:
            s.close()
            self._sender = None
        from .stream import Sender, stream_id  # noqa: PLC0415
        actor = self.actor
        host, port, secret = self.call("stream_open")
        try:
            s = Sender(host, port, secret, stream_id(), timeout=self.timeout)
        except OSError as e:
            self.streaming = False  # unreachable (a firewall): Ray's object store still is
            import logging  # noqa: PLC0415
            logging.getLogger("devices").warning(
                "ps task %s: cannot open its gradient stream at %s:%s (%s); sending through Ray's object store",
                self.name, host, port, e)
            return None
        self._sender, self._sender_actor = s, actor
        return s

    def _driver_node(self) -> str | None:
        """This process's Ray node id, asked once per task (a task belongs to one connection)."""
        if self._here is None:
            try:
                self._here = ray_module().get_runtime_context().get_node_id()
            except Exception:  # noqa: BLE001 - not connected
                return None
        return self._here

    def drop_sender(self) -> None:
        s, self._sender = self._sender, None
        if s is not None:
            s.close()

    def start_recover(self) -> Callable[[], Callable[[], Any] | None]:
        """Start checking that the task answers. The returned wait gives None when it does,
        else the wait of its restart on a live node (begun by the cluster), or raises
        UnavailableError when no cluster can restart it. Two steps so that many tasks are
        checked, then restarted, at once."""
        seen = self.actor
        if self.closed:
            self.submit("ping")  # raises: the cluster was shut down
        try:
            ref = self.submit("ping")
        except UnavailableError:
            ref = None

        def wait() -> Callable[[], Any] | None:
            if ref is not None:
                try:
                    self.wait(ref)
                    return None
                except UnavailableError:
                    if self.recoverer is None:
                        raise
            elif self.recoverer is None:
                raise self.unavailable(RuntimeError("the call could not be sent"))
            return self.recoverer(self, seen)
        return wait


def payload(arrays: list) -> tuple[Any, int]:
    """What to pass for a list of host arrays: the list itself when small, else one ray.put ref."""
    nbytes = sum(a.nbytes for a in arrays)
    if nbytes >= BY_VALUE_MAX:
        return ray_module().put(arrays), nbytes
    return arrays, nbytes

