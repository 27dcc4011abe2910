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


class ClusterSpec:
    """TF 1.x's ``tf.train.ClusterSpec``: job names mapped to their tasks' network addresses.

    A job's tasks are a list (task ``i`` at index ``i``) or a dict ``{task index: address}``
    for a sparse job. Jobs keep the order they were given in; ``repr`` and
    :meth:`as_cluster_def` sort them, as TF does.

    >>> import varstore as tf
    >>> c = tf.train.ClusterSpec({"ps": ["ps0:2222"], "worker": {1: "w1:2222", 3: "w3:2222"}})
    >>> c.jobs, c.num_tasks("worker"), c.task_indices("worker"), c.task_address("worker", 3)
    (['ps', 'worker'], 2, [1, 3], 'w3:2222')
    >>> c.as_dict()
    {'ps': ['ps0:2222'], 'worker': {1: 'w1:2222', 3: 'w3:2222'}}
    """

    def __init__(self, cluster: Any):
        if isinstance(cluster, ClusterSpec):
            # TF copies through its sorted ClusterDef: the copy's jobs come out sorted.
            self._cluster_spec: dict[str, dict[int, str]] = {
                job: dict(sorted(tasks.items())) for job, tasks in sorted(cluster._cluster_spec.items())}
            return
        if not isinstance(cluster, dict):
            raise TypeError("`cluster` must be a dictionary mapping one or more job names to lists of network "
                            f"addresses, or a `ClusterDef` protocol buffer; received {type(cluster).__name__}")
        spec: dict[str, dict[int, str]] = {}
        for job_name, tasks in cluster.items():
            if isinstance(tasks, (list, tuple)):
                job_tasks = dict(enumerate(tasks))
            elif isinstance(tasks, dict):
                job_tasks = {int(i): task for i, task in tasks.items()}
            else:
                raise TypeError(f"The tasks for job {job_name!r} must be a list or a dictionary from integers "
                                f"to strings; received {type(tasks).__name__}")
            spec[job_name] = job_tasks
        # TF checks names and addresses when it builds its ClusterDef: the same TypeErrors here.
        for job_name, job_tasks in spec.items():
            if not isinstance(job_name, (str, bytes)):
                raise TypeError(f"Job name {job_name!r} must be bytes or unicode")
            for address in job_tasks.values():
                if not isinstance(address, (str, bytes)):
                    raise TypeError(f"Task address {address!r} must be bytes or unicode")
        self._cluster_spec = spec

    def __bool__(self) -> bool:
        return bool(self._cluster_spec)

    __nonzero__ = __bool__

    def __eq__(self, other: Any) -> bool:
        # As TF: the job -> {index: address} mapping is compared (a dict of lists is not equal).
        return self._cluster_spec == (other._cluster_spec if isinstance(other, ClusterSpec) else other)

    def __ne__(self, other: Any) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]  # mutable-looking and compared by value: unhashable, as TF

    def __repr__(self) -> str:
        d = self.as_dict()
        return "ClusterSpec({" + ", ".join(f"{k!r}: {d[k]!r}" for k in sorted(d)) + "})"

    def as_dict(self) -> dict[str, Any]:
        """``{job: [addresses]}``, or ``{job: {index: address}}`` for a job whose indices have gaps."""
        out: dict[str, Any] = {}
        for job in self.jobs:
            indices = self.task_indices(job)
            if not indices:
                out[job] = {}
            elif max(indices) + 1 == len(indices):
                out[job] = self.job_tasks(job)
            else:
                out[job] = {i: self.task_address(job, i) for i in indices}
        return out

    def as_cluster_def(self) -> dict[str, Any]:
        """The cluster as TF's ClusterDef fields (no protobuf here): ``{"job": [{"name", "tasks"}]}``,
        jobs and tasks sorted as TF sorts them."""
        return {"job": [{"name": job, "tasks": dict(sorted(tasks.items()))}
                        for job, tasks in sorted(self._cluster_spec.items())]}

    @property
    def jobs(self) -> list[str]:
        """The job names, in the order given."""
        return list(self._cluster_spec)

    def _job(self, job_name: str) -> dict[int, str]:
        try:
            return self._cluster_spec[job_name]
        except (KeyError, TypeError):
            raise ValueError(f"No such job in cluster: {job_name!r}") from None

    def num_tasks(self, job_name: str) -> int:
        """How many tasks ``job_name`` has (ValueError for a job not in the cluster)."""
        return len(self._job(job_name))

    def task_indices(self, job_name: str) -> list[int]:
        """The task indices of ``job_name``, sorted."""
        return sorted(self._job(job_name))

    def task_address(self, job_name: str, task_index: int) -> str:
        """The address of task ``task_index`` of ``job_name`` (ValueError when there is none)."""
        job = self._job(job_name)
        try:
            return job[task_index]
        except (KeyError, TypeError):
            raise ValueError(f"No task with index {task_index!r} in job {job_name!r}") from None

    def job_tasks(self, job_name: str) -> list[str | None]:
        """Addresses of ``job_name``'s tasks by index, None where a sparse job has no task."""
        job = self._job(job_name)
        out: list[str | None] = [None] * (max(job) + 1 if job else 0)
        for i, task in job.items():
            out[i] = task
        return out


def _cluster_tasks(cluster: Any, job: str | None) -> int:
    """How many tasks ``cluster`` gives the ps job (0: none, so no device function), as TF counts."""
    if isinstance(cluster, ClusterSpec):
        spec = cluster.as_dict()
    elif not isinstance(cluster, dict) and hasattr(cluster, "as_dict"):
        spec = cluster.as_dict()  # another ClusterSpec-like object
    else:
        spec = ClusterSpec(cluster).as_dict()  # TypeError for what is no cluster, as TF
    if job not in spec or spec[job] is None:
        return 0
    return len(spec[job])


def replica_device_setter(ps_tasks: int = 0, ps_device: str = "/job:ps", worker_device: str = "/job:worker",
                          merge_devices: bool = True, cluster: Any = None, ps_ops: list | None = None,
                          ps_strategy: Callable[[Any], int] | None = None):
    """A device function for ``with tf.device(...)``; None when there are no ps tasks.

    ``cluster`` (a :class:`ClusterSpec`, or a dict ``{"ps": [...], "worker": [...]}``) sets
    ``ps_tasks`` to the number of tasks of ``ps_device``'s job, whatever ``ps_tasks`` says; a
    cluster without that job gives None (no ps), as TF.

    >>> import varstore as tf
    >>> tf.train.replica_device_setter(cluster={"worker": ["w0:2222"]}) is None
    True
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
