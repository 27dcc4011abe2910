"""The task's side: the Ray actor of one ps task, which holds its arrays and runs every op on them.

Arrays are numpy on the task's CPU or cupy on a GPU the actor was given. Initial values
are rebuilt from their description and optimizer updates run with the operations the
driver sends along (:mod:`.operations`: the library above devices registers them).
"""
from __future__ import annotations

import contextlib
import os
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from .client import task_unavailable
from .operations import Operations
from .wire import decode_updates


class _Shipped:
    """Stands in for a variable inside the task when an initial value reads one."""

    is_initialized = True  # the driver initialized it before shipping its value

    def __init__(self, name: str, array: Any):
        self.name, self._name, self._array = name, name, array
        self.shape, self.dtype = tuple(array.shape), array.dtype
        self._dtype = array.dtype
        # What a read of a variable looks at: its shape, and a lock (nothing else writes this copy).
        self.storage = types.SimpleNamespace(shape=self.shape, lock=contextlib.nullcontext(), array=array)

    def value(self) -> Any:
        return self._array

    _live = value  # what a read of a variable evaluates (the library's VariableValue)

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
        self._receiver: Any = None  # the gradient stream's listener (.stream), opened on demand

    # -- helpers ---------------------------------------------------------------------
    def _device(self, where: Sequence) -> Any:
        kind, index = str(where[0]), int(where[1])
        dev = self._devices.get((kind, index))
        if dev is None:
            from ... import manager
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
                f"and lost its variables. Restore them from the latest checkpoint: saver.restore(sess, path) "
                f"(device='{self.name}': only this task's)") from None

    @staticmethod
    def _operand(dev: Any, key: int | None, data: Any, get: Callable) -> Any:
        return get(key) if key is not None else dev.asarray(data)

    @staticmethod
    def _device_of_array(a: Any) -> Any:
        from ...transfer import device_of
        return device_of(a)

    # -- calls -------------------------------------------------------------------------
    def info(self) -> dict:
        import socket
        node_id = node_address = None
        try:  # the node, as Ray names it (the hostname is not unique: several nodes on one machine)
            import ray
            node_id = ray.get_runtime_context().get_node_id()
            node_address = ray.util.get_node_ip_address()
        except Exception:  # noqa: BLE001 - outside Ray (a test calling the class itself)
            pass
        return {"task": self.name, "pid": os.getpid(), "incarnation": self.incarnation, "gpus": self.gpus,
                "host": socket.gethostname(), "node_id": node_id, "node_address": node_address,
                "arrays": len(self.arrays),
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

    def create(self, key: int, where: Sequence, ops: Operations, desc: dict, token: int | None,
               keys: dict, shipped_names: list, data: list) -> tuple:
        dev = self._device(where)
        initial = self.initials.get(token) if token is not None else None
        if initial is None:
            values = {name: _Shipped(name, self._get(k)) for name, k in keys.items()}
            values.update({name: _Shipped(name, a) for name, a in zip(shipped_names, data)})

            def lookup(name: str) -> Any:
                if name not in values:
                    raise InvalidArgumentError(f"{self.name}: initial value reads {name!r}, which was not sent")
                return values[name]
            initial = ops.build_initial(desc, lookup)
            if token is not None:
                self.initials[token] = initial
        value = initial.evaluate(dev, ops.new_context())
        if not dev.holds(value):
            value = dev.asarray(value, copy=True)
        self.arrays[key] = value
        return list(value.shape), value.dtype.str

    def stream_open(self) -> tuple:
        """(host, port, secret) of this task's gradient stream listener (.stream), opened once."""
        if self._receiver is None:
            from .stream import Receiver, node_address
            self._receiver = Receiver(node_address())
        return (*self._receiver.address, self._receiver.secret)

    def apply(self, where: Sequence, ops: Operations, rule: str, slot_names: list, hyper: dict, batch: tuple,
              data: Any) -> None:
        if isinstance(data, dict):  # the bytes come on the stream: read them first, whatever fails next
            if self._receiver is None:
                raise task_unavailable(self.name, f"ps task {self.name} restarted (incarnation {self.incarnation}) "
                                                  "and lost its stream and its variables")
            data = self._receiver.receive(data["stream"], data["layout"], data["nbytes"],
                                          timeout=float(data.get("timeout", 60.0)))
        dev = self._device(where)
        # Host data is used as Ray hands it over (read-only, zero-copy) on a CPU; a GPU copies it in.
        convert = None if dev.kind == "cpu" else dev.asarray
        apply_dense, apply_sparse = ops.apply_dense, ops.apply_sparse
        try:
            for var, slots, grad, indices in decode_updates(batch, data, slot_names, self.arrays.__getitem__,
                                                            convert):
                if indices is None:
                    apply_dense(rule, dev, var, grad, slots, **hyper)
                else:
                    apply_sparse(rule, dev, var, indices, grad, slots, **hyper)
        except KeyError as e:  # a key this task lost: say so, naming the task
            self._get(e.args[0])
            raise

    def _node(self) -> str:
        info = self.info()
        return f"node {str(info['node_id'])[:12]} ({info['node_address'] or info['host']})"

    def save(self, path: str, names: list, extra: dict, writer: Callable, probe: Sequence | None = None) -> int:
        if probe is not None:  # the driver's file, in the directory it sees: do we see the same one?
            try:
                with open(probe[0]) as f:
                    seen = f.read(64)
            except OSError:
                seen = None
            if seen != probe[1]:
                raise FailedPreconditionError(
                    f"sharded save: ps task {self.name} on {self._node()} does not see the directory "
                    f"{os.path.dirname(path)!r} that the driver saves into (each task writes its shard from its "
                    f"own node). Save to a directory every node mounts at the same path (a shared filesystem), "
                    f"to a URL (s3://...: the driver writes one object), or with Saver(sharded=False)")
        return int(writer(path, [(name, self._get(key)) for name, key in names], extra=extra))

    def load(self, where: Sequence, entries: list, loader: Callable) -> list:
        dev = self._device(where)
        for path in {e[1] for e in entries}:
            if not os.path.exists(path):
                raise NotFoundError(
                    f"restore: ps task {self.name} on {self._node()} cannot see {path!r} (each task reads its "
                    f"variables from its own node). Restore from a directory every node mounts at the same path, "
                    f"or from a URL (s3://...: the driver reads and sends)")
        work = [(path, name, np.dtype(dtype), self.arrays.get(key) if keep else None)
                for key, path, name, dtype, keep in entries]
        arrays = loader(dev, work)
        out = []
        for (key, *_rest), a in zip(entries, arrays):
            self.arrays[key] = a
            out.append((list(a.shape), a.dtype.str))
        return out

