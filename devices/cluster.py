"""Parameter-server tasks on Ray: start a local cluster, join one, shut it down.

>>> import devices.cluster as cluster                     # doctest: +SKIP
>>> c = cluster.start(ps_tasks=2)                          # doctest: +SKIP
>>> devices.get_device("/job:ps/task:1").name              # doctest: +SKIP
'/job:ps/replica:0/task:1/device:CPU:0'
>>> cluster.shutdown()                                     # doctest: +SKIP

Each ps task is one named Ray actor (``"<job>/task:<N>"`` in the cluster's
namespace) holding its variables' arrays: numpy, or cupy on a GPU the actor
was given (``gpus_per_task``; ``/job:ps/task:1/device:GPU:0``). While a
cluster is current, ``devices.get_device`` resolves ``/job:ps/task:N`` to
that task; without one, soft placement puts such variables on the local CPU.

A cluster started here listens on loopback only and leaves nothing behind
but its temporary directory. Tasks restart after their process dies
(``max_restarts``) but never re-run a call (``max_task_retries=0``: an update
is applied at most once); a restarted task has lost its variables until they
are restored from a checkpoint (docs/PS.md, "Recovery").
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import manager
from .backends.ps import DEFAULT_TIMEOUT, PsDevice, PsTask, PsTaskServer
from .errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from .spec import DeviceSpec

log = logging.getLogger("devices")

DEFAULT_NAMESPACE = "varstore"
DEFAULT_OBJECT_STORE_BYTES = 512 << 20
# Environment for every Ray process this one starts (they inherit it).
_LOOPBACK_ENV = {
    # Measured: without this, Ray bound the external interface even when given 127.0.0.1.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
_ACTOR_NAME = "{job}/task:{index}"
_ACTOR_RE = re.compile(r"(?P<job>[A-Za-z][A-Za-z0-9_]*)/task:(?P<index>0|[1-9][0-9]*)\Z")

_lock = threading.RLock()
_current: Cluster | None = None


def _ray(local: bool = False):
    """Ray, imported with the environment a local (loopback-only) cluster needs when ``local``."""
    if local:
        for k, v in _LOOPBACK_ENV.items():
            os.environ[k] = v  # before the import: Ray reads them when it is imported
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise FailedPreconditionError(
            "devices.cluster needs Ray: pip install 'varstore[ps]' (or 'ray>=2.9')") from None
    if local:
        # Imported earlier without the variable, Ray would map 127.0.0.1 to the external
        # address in ray.init; the constant it read at import decides that.
        consts = getattr(getattr(ray, "_private", None), "ray_constants", None)
        if getattr(consts, "ENABLE_RAY_CLUSTER", False):
            consts.ENABLE_RAY_CLUSTER = False
    return ray


class Cluster:
    """A connected set of ps tasks. ``devices.cluster.current()`` is the one in use.

    Attributes: ``address`` (give it to :func:`connect` from another process),
    ``job``, ``namespace``, ``ps_tasks`` (count), ``tasks`` (the PsTask of each).
    """

    def __init__(self, job: str, namespace: str, tasks: list[PsTask], address: str, owns_ray: bool,
                 owns_actors: bool, actor_options: dict, temp_dir: str | None):
        self.job, self.namespace, self.tasks, self.address = job, namespace, tasks, address
        self.temp_dir = temp_dir
        self._owns_ray, self._owns_actors = owns_ray, owns_actors
        self._actor_options = actor_options
        self._devices: dict[tuple, PsDevice] = {}
        self._lock = threading.Lock()
        self.closed = False

    @property
    def ps_tasks(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"<devices.cluster.Cluster {self.address} job={self.job!r} ps_tasks={self.ps_tasks}>"

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutdown()

    # -- placement -------------------------------------------------------------------
    def resolve(self, spec: DeviceSpec) -> PsDevice | None:
        """The PsDevice for ``spec`` (``/job:ps/task:N[/device:GPU:i]``), None if no such place.

        A spec without a task means task 0; without a device type, the task's CPU.
        """
        if self.closed or spec.job != self.job or spec.replica not in (None, 0):
            return None
        index = 0 if spec.task is None else spec.task
        if index >= len(self.tasks):
            return None
        kind = spec.device_type or "CPU"
        dev_index = spec.device_index or 0
        task = self.tasks[index]
        if not ((kind == "CPU" and dev_index == 0) or (kind == "GPU" and dev_index < task.gpus)):
            return None
        key = (index, kind, dev_index)
        with self._lock:
            dev = self._devices.get(key)
            if dev is None:
                full = DeviceSpec(job=self.job, replica=0, task=index, device_type=kind, device_index=dev_index)
                dev = self._devices[key] = PsDevice(full, task, kind, dev_index)
            return dev

    def register(self) -> None:
        """Make this cluster the one ``devices.get_device`` resolves ps specs with."""
        manager.register_remote(self.resolve)

    def device_names(self) -> list[str]:
        """Canonical names of the places this cluster offers (each task's CPU, then its GPUs)."""
        out = []
        for t in self.tasks:
            out.append(f"{t.name}/device:CPU:0")
            out += [f"{t.name}/device:GPU:{i}" for i in range(t.gpus)]
        return out

    # -- tasks ---------------------------------------------------------------------------
    def info(self, task: int, timeout: float | None = None) -> dict:
        """What task ``task`` reports: ``pid``, ``incarnation`` (changes on restart), ``gpus``,
        ``host``, ``arrays``, ``bytes``."""
        t = self._task(task)
        return t.wait(t.submit("info"), timeout=timeout)

    def ping(self, timeout: float = 10.0) -> list[str]:
        """Every task's incarnation, asked in parallel; UnavailableError names a task that does not answer."""
        refs = [(t, t.submit("ping")) for t in self.tasks]
        return [t.wait(r, timeout=timeout) for t, r in refs]

    def restart_task(self, task: int, timeout: float | None = None) -> dict:
        """Replace task ``task``'s actor with a fresh one (same name; its arrays are gone).

        Ray restarts a task whose process died by itself (``max_restarts``); this is for a
        task that is hung or has used up its restarts. Devices and variables keep working
        once their values are restored. Returns the new task's :meth:`info`.
        """
        ray = _ray()
        t = self._task(task)
        try:
            ray.kill(t.actor, no_restart=True)
        except Exception as e:  # noqa: BLE001 - already dead is fine
            log.info("killing %s: %s", t.name, e)
        deadline = time.monotonic() + (timeout or t.timeout)
        while True:  # the name is freed once the GCS has seen the old actor die
            try:
                t.actor = _create_actor(ray, self.job, task, t.gpus, self.namespace, self._actor_options)
                break
            except ValueError:
                if time.monotonic() > deadline:
                    raise UnavailableError(
                        f"ps task {t.name}: could not restart it (its name is still taken)") from None
                time.sleep(0.05)
        return self.info(task, timeout=timeout)

    def _task(self, task: int) -> PsTask:
        if not isinstance(task, int) or not 0 <= task < len(self.tasks):
            raise InvalidArgumentError(f"{self}: no ps task {task!r} (tasks 0..{len(self.tasks) - 1})")
        return self.tasks[task]

    def _close(self) -> None:
        self.closed = True
        for t in self.tasks:
            t.closed = True


def _create_actor(ray: Any, job: str, index: int, gpus: int, namespace: str, options: dict) -> Any:
    cls = ray.remote(PsTaskServer)
    return cls.options(
        name=_ACTOR_NAME.format(job=job, index=index), namespace=namespace,
        max_restarts=options["max_restarts"], max_task_retries=0,
        num_cpus=options["num_cpus_per_task"], num_gpus=gpus,
    ).remote(job, index, gpus)


def current() -> Cluster | None:
    """The cluster started or joined by this process, or None."""
    return _current


def start(ps_tasks: int = 1, *, job: str = "ps", gpus_per_task: int | Sequence[int] = 0,
          num_cpus: int | None = None, num_gpus: int | None = None,
          object_store_memory: int = DEFAULT_OBJECT_STORE_BYTES, temp_dir: str | None = None,
          namespace: str = DEFAULT_NAMESPACE, max_restarts: int = -1, timeout: float = DEFAULT_TIMEOUT,
          num_cpus_per_task: float = 0, register: bool = True) -> Cluster:
    """Start a local Ray cluster on loopback with ``ps_tasks`` ps tasks and make it current.

    ``gpus_per_task``: GPUs for each task's actor (an int, or one int per task); a task with
    a GPU serves ``/job:ps/task:N/device:GPU:0`` with cupy. ``object_store_memory`` (bytes)
    bounds Ray's shared memory; ``temp_dir`` holds Ray's sockets and logs (a new directory
    under the system temp dir by default). ``max_restarts``: how often Ray restarts a task
    whose process died (-1: always). ``timeout``: seconds any call may take (plus time for
    the bytes it moves) before UnavailableError.

    Startup takes a few seconds (``ray.init`` measured 2-4 s).
    """
    global _current
    ray = _ray(local=True)
    if not isinstance(ps_tasks, int) or ps_tasks < 1:
        raise InvalidArgumentError(f"cluster.start: ps_tasks must be a positive int, received {ps_tasks!r}")
    DeviceSpec(job=job)  # validates the job name
    gpus = [int(gpus_per_task)] * ps_tasks if isinstance(gpus_per_task, int) else [int(g) for g in gpus_per_task]
    if len(gpus) != ps_tasks or any(g < 0 for g in gpus):
        raise InvalidArgumentError(f"cluster.start: gpus_per_task must be an int or {ps_tasks} non-negative ints, "
                                   f"received {gpus_per_task!r}")
    with _lock:
        if _current is not None:
            raise FailedPreconditionError(f"a cluster is already current ({_current}); call "
                                          "devices.cluster.shutdown() first")
        if ray.is_initialized():
            raise FailedPreconditionError("Ray is already initialized in this process; use "
                                          "devices.cluster.connect(address) to join its cluster")
        if temp_dir is None:
            temp_dir = tempfile.mkdtemp(prefix="varstore-ray-")
        temp_dir = os.path.abspath(temp_dir)
        if len(temp_dir) > 60:  # Ray puts unix sockets below it: their paths are limited to 107 bytes
            raise InvalidArgumentError(f"cluster.start: temp_dir {temp_dir!r} is too long for Ray's sockets "
                                       "(keep it under 60 characters)")
        init = dict(_node_ip_address="127.0.0.1", include_dashboard=False, namespace=namespace,
                    object_store_memory=int(object_store_memory), _temp_dir=temp_dir,
                    logging_level=logging.WARNING, configure_logging=True)
        if num_cpus is not None:
            init["num_cpus"] = num_cpus
        if num_gpus is not None:
            init["num_gpus"] = num_gpus
        ray.init(**init)
        try:
            have = ray.cluster_resources().get("GPU", 0)
            if sum(gpus) > have:
                raise InvalidArgumentError(f"cluster.start: the tasks ask for {sum(gpus)} GPU(s), "
                                           f"this machine offers {have:g}")
            options = {"max_restarts": int(max_restarts), "num_cpus_per_task": num_cpus_per_task}
            actors = [_create_actor(ray, job, i, g, namespace, options) for i, g in enumerate(gpus)]
            tasks = [PsTask(job, i, a, timeout, g) for i, (a, g) in enumerate(zip(actors, gpus))]
            address = ray.get_runtime_context().gcs_address
            if not address.startswith(("127.", "localhost:", "[::1]")):
                raise UnavailableError(f"cluster.start: Ray listens on {address}, not on loopback; refusing "
                                       "to run a cluster reachable from outside this machine")
            c = Cluster(job, namespace, tasks, address, True, True, options, temp_dir)
            c.ping(timeout=max(timeout, 30.0))  # every task is up before anyone uses it
        except BaseException:
            ray.shutdown()
            raise
        _current = c
        if register:
            c.register()
    log.info("started %s (temp dir %s)", c, temp_dir)
    return c


def connect(address: str, *, job: str = "ps", namespace: str = DEFAULT_NAMESPACE,
            ps_tasks: int | None = None, timeout: float = DEFAULT_TIMEOUT, register: bool = True) -> Cluster:
    """Join the Ray cluster at ``address`` (``Cluster.address`` of the process that started it,
    ``"host:port"``) and use its ps tasks (the actors named ``"<job>/task:N"`` in ``namespace``).

    ``ps_tasks``: how many tasks to expect (default: every task found). Raises
    UnavailableError when the cluster or a task cannot be reached.
    """
    global _current
    ray = _ray()
    with _lock:
        if _current is not None:
            raise FailedPreconditionError(f"a cluster is already current ({_current}); call "
                                          "devices.cluster.shutdown() first")
        owns = not ray.is_initialized()
        if owns:
            try:
                ray.init(address=address, namespace=namespace, logging_level=logging.WARNING)
            except Exception as e:  # noqa: BLE001 - ConnectionError and friends
                raise UnavailableError(f"cannot join the Ray cluster at {address}: {e}") from None
        try:
            found = {}
            for name in ray.util.list_named_actors(all_namespaces=False):
                m = _ACTOR_RE.match(name if isinstance(name, str) else name.get("name", ""))
                if m and m.group("job") == job:
                    found[int(m.group("index"))] = name
            count = len(found) if ps_tasks is None else ps_tasks
            missing = [i for i in range(count) if i not in found]
            if count == 0 or missing:
                raise UnavailableError(f"cluster at {address}: no ps task {missing or 0} of job {job!r} "
                                       f"in namespace {namespace!r} (found {sorted(found)})")
            tasks = []
            for i in range(count):
                actor = ray.get_actor(_ACTOR_NAME.format(job=job, index=i), namespace=namespace)
                t = PsTask(job, i, actor, timeout)
                t.gpus = int(t.call("info", nbytes=0)["gpus"])
                tasks.append(t)
            c = Cluster(job, namespace, tasks, address, owns, False,
                        {"max_restarts": -1, "num_cpus_per_task": 0}, None)
        except BaseException:
            if owns:
                ray.shutdown()
            raise
        _current = c
        if register:
            c.register()
    return c


def shutdown() -> None:
    """Forget the current cluster: ps specs resolve by soft placement again, variables still on
    its tasks raise UnavailableError. A cluster this process started is stopped (its actors,
    then Ray); a joined one is only left."""
    global _current
    with _lock:
        c, _current = _current, None
        if c is None:
            return
        if manager._remote == c.resolve:
            manager.register_remote(None)
        c._close()
        try:
            ray = _ray()
            if c._owns_actors:
                for t in c.tasks:
                    try:
                        ray.kill(t.actor, no_restart=True)
                    except Exception:  # noqa: BLE001 - already gone
                        pass
            if c._owns_ray and ray.is_initialized():
                ray.shutdown()
        finally:
            log.info("shut down %s", c)
