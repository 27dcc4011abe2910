"""``replica_device_setter``: TF 1.x's device function for parameter-server training.

Variables go to ps tasks (round-robin from task 0, or a load-balancing
strategy); other ops go to the worker device. Explicit placements are
merged in (inner fields win) unless ``merge_devices=False``.

>>> import varstore as tf
>>> tf.reset_default_graph()
>>> with tf.device(tf.train.replica_device_setter(ps_tasks=2)):
...     a, b = tf.Variable(1.0, name="a"), tf.Variable(2.0, name="b")
>>> a.requested_device, b.requested_device
('/job:ps/task:0', '/job:ps/task:1')
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from devices.dtypes import as_dtype
from devices.errors import InvalidArgumentError
from devices.shapes import num_elements
from devices.spec import DeviceSpec

STANDARD_PS_OPS = ("Variable", "VariableV2", "VarHandleOp", "AutoReloadVariable", "MutableHashTable",
                   "MutableHashTableV2", "MutableHashTableOfTensors", "MutableHashTableOfTensorsV2",
                   "MutableDenseHashTable", "MutableDenseHashTableV2")


class _RoundRobinStrategy:
    def __init__(self, num_tasks: int):
        self._num_tasks = num_tasks
        self._next = 0

    def __call__(self, op: Any) -> int:
        task = self._next
        self._next = (self._next + 1) % self._num_tasks
        return task


class GreedyLoadBalancingStrategy:
    """Place each variable on the ps task with the least load so far (``load_fn(op)`` per op).

    With :func:`byte_size_load_fn`, large variables spread evenly by bytes.
    """

    def __init__(self, num_tasks: int, load_fn: Callable[[Any], float]):
        if num_tasks <= 0:
            raise InvalidArgumentError(f"GreedyLoadBalancingStrategy: num_tasks must be positive, received {num_tasks}")
        self._load_fn = load_fn
        self._loads = [0.0] * num_tasks

    def __call__(self, op: Any) -> int:
        task = min(range(len(self._loads)), key=lambda i: (self._loads[i], i))
        self._loads[task] += self._load_fn(op)
        return task


def byte_size_load_fn(op: Any) -> int:
    """Bytes of the variable an op creates (shape × itemsize); 0 when the shape is unknown."""
    shape, dtype = getattr(op, "shape", None), getattr(op, "dtype", None)
    if shape is None or dtype is None:
        warnings.warn(f"byte_size_load_fn: op {getattr(op, 'name', op)!r} has no shape/dtype; counted as 0 bytes",
                      stacklevel=2)
        return 0
    return num_elements(tuple(shape)) * as_dtype(dtype).itemsize


def _cluster_tasks(cluster: Any, job: str | None) -> int:
    spec = cluster.as_dict() if hasattr(cluster, "as_dict") else cluster
    if not isinstance(spec, dict):
        raise InvalidArgumentError(f"replica_device_setter: cluster must be a dict of job -> tasks, received {cluster!r}")
    tasks = spec.get(job, [])
    return len(tasks)


def replica_device_setter(ps_tasks: int = 0, ps_device: str = "/job:ps", worker_device: str = "/job:worker",
                          merge_devices: bool = True, cluster: Any = None, ps_ops: list | None = None,
                          ps_strategy: Callable[[Any], int] | None = None):
    """A device function for ``with tf.device(...)``; None when there are no ps tasks.

    ``cluster`` (a dict ``{"ps": [...], "worker": [...]}`` or anything with ``as_dict()``)
    sets ``ps_tasks`` to the number of ps tasks it lists.
    """
    if cluster is not None:
        ps_tasks = _cluster_tasks(cluster, DeviceSpec.from_string(ps_device).job)
    if ps_tasks == 0:
        return None
    if ps_tasks < 0:
        raise InvalidArgumentError(f"replica_device_setter: ps_tasks must be >= 0, received {ps_tasks}")
    ps_ops = tuple(ps_ops) if ps_ops is not None else STANDARD_PS_OPS
    strategy = ps_strategy or _RoundRobinStrategy(ps_tasks)
    ps_spec = DeviceSpec.from_string(ps_device)
    worker_spec = DeviceSpec.from_string(worker_device or None)

    def device_function(op: Any) -> str:
        op_device = getattr(op, "device", "") or ""
        if not merge_devices and op_device:
            return op_device
        current = DeviceSpec.from_string(op_device or None)
        if ps_device and getattr(op, "type", None) in ps_ops:
            spec = ps_spec
            if spec.job and (not current.job or current.job == spec.job):
                spec = spec.replace(task=strategy(op))
            return spec.make_merged_spec(current).to_string()
        return worker_spec.make_merged_spec(current).to_string()

    return device_function
