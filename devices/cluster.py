"""Parameter-server tasks on Ray: create them (on a local Ray or on a cluster you have), join
them from another process, recover them when a node is lost, shut them down.

>>> import devices.cluster as cluster                     # doctest: +SKIP
>>> c = cluster.start(ps_tasks=2)                          # doctest: +SKIP
>>> c = cluster.start(ps_tasks=2, address="auto")          # doctest: +SKIP
>>> devices.get_device("/job:ps/task:1").name              # doctest: +SKIP
'/job:ps/replica:0/task:1/device:CPU:0'
>>> cluster.shutdown()                                     # doctest: +SKIP

Each ps task is one named Ray actor (``"<job>/task:<N>"`` in the cluster's
namespace) holding its variables' arrays: numpy, or cupy on a GPU the actor
was given (``gpus_per_task``; ``/job:ps/task:1/device:GPU:0``). While a
cluster is current, ``devices.get_device`` resolves ``/job:ps/task:N`` to
that task; without one, soft placement puts such variables on the local CPU.

Placement: every task is pinned to one node, chosen here (by default one task per
node while nodes remain, then the least loaded; ``placement=`` names a node id or a
Ray resource label per task, strict or soft). Pinning is what makes placement hold:
Ray's own spreading and soft affinity put two tasks on one node when tried, and a
task Ray restarts on a lost node's resources waits for ever.

Tasks restart after their process dies (``max_restarts``, on the same node) but never
re-run a call (``max_task_retries=0``: an update is applied at most once); a restarted
task has lost its variables until they are restored from a checkpoint. A task whose
node is lost is not placed again by Ray: ``saver.restore(sess, path)`` restarts it on a
live node and restores its variables (docs/PS.md, "Faults and recovery").
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

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
_NODE_ID_RE = re.compile(r"[0-9a-f]{56}\Z")
# How long a restarted task may take to answer its first call (a new worker process).
_START_TIMEOUT = 30.0

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


# -- placement ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    """Where one ps task runs: a Ray node, a Ray resource label, or spread (neither).

    ``node``: a node id (hex, as ``ray.nodes()`` and ``Cluster.info(n)["node_id"]`` give it).
    ``resource``: a custom resource some nodes offer (``ray start --resources='{"ps": 4}'``);
    the task goes to the least loaded node that offers it. ``soft``: when no live node
    matches, go to any live node instead of failing. The placement holds across restarts.

    >>> Placement(resource="ps_host", soft=True)
    Placement(node=None, resource='ps_host', soft=True)
    """

    node: str | None = None
    resource: str | None = None
    soft: bool = False

    def describe(self) -> str:
        how = "soft" if self.soft else "strict"
        if self.node:
            return f"node {self.node[:12]} ({how})"
        if self.resource:
            return f"resource {self.resource!r} ({how})"
        return "spread"


SPREAD = Placement()
PlacementLike = Union[Placement, str, None]  # noqa: UP007 - a runtime alias


def _live_nodes(ray: Any) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _as_placement(p: PlacementLike, live: list[dict]) -> Placement:
    """A Placement from what the user wrote: a str names a live node id, else a resource."""
    if p is None:
        return SPREAD
    if isinstance(p, Placement):
        return p
    if isinstance(p, str) and p:
        if _NODE_ID_RE.match(p) or any(n["NodeID"] == p for n in live):
            return Placement(node=p)
        return Placement(resource=p)
    raise InvalidArgumentError(f"cluster.start: a placement is a node id, a resource label, a "
                               f"devices.cluster.Placement or None, received {p!r}")


def _choose_node(placement: Placement, gpus: int, live: list[dict], load: dict[str, int],
                 avoid: str | None, what: str) -> str:
    """The node for one task: the placement's node, or the least loaded node that fits
    (fewest ps tasks, then not ``avoid`` (the driver's node: it computes the gradients),
    then the order Ray lists nodes in). UnavailableError says why none fits."""
    fits = [n for n in live if n.get("Resources", {}).get("GPU", 0) >= gpus]
    if placement.node:
        if any(n["NodeID"] == placement.node for n in fits):
            return placement.node
        if not placement.soft:
            raise UnavailableError(
                f"{what}: its placement is node {placement.node}, which is "
                f"{'gone' if not any(n['NodeID'] == placement.node for n in live) else 'short of GPUs'} "
                f"(live nodes: {', '.join(n['NodeID'][:12] for n in live) or 'none'}). Bring the node back, "
                f"or move the task: cluster.current().restart_task(n, placement=None) spreads it")
    elif placement.resource:
        with_label = [n for n in fits if n.get("Resources", {}).get(placement.resource, 0) > 0]
        if with_label:
            fits = with_label
        elif not placement.soft:
            raise UnavailableError(
                f"{what}: its placement is resource {placement.resource!r}, which no live node offers "
                f"(live nodes: {', '.join(n['NodeID'][:12] for n in live) or 'none'}). Add a node with it, or "
                f"move the task: cluster.current().restart_task(n, placement=None) spreads it")
    if not fits:
        raise UnavailableError(f"{what}: no live node offers {gpus} GPU(s)")
    order = {n["NodeID"]: i for i, n in enumerate(fits)}
    return min(order, key=lambda nid: (load.get(nid, 0), nid == avoid, order[nid]))


def _node_address(live: list[dict], node_id: str | None) -> str | None:
    for n in live:
        if n["NodeID"] == node_id:
            return n.get("NodeManagerAddress")
    return None


class Cluster:
    """A connected set of ps tasks. ``devices.cluster.current()`` is the one in use.

    Attributes: ``address`` (give it to :func:`connect` from another process),
    ``job``, ``namespace``, ``ps_tasks`` (count), ``tasks`` (the PsTask of each),
    ``placements`` (the :class:`Placement` of each task).
    """

    def __init__(self, job: str, namespace: str, tasks: list[PsTask], address: str, owns_ray: bool,
                 owns_actors: bool, actor_options: dict, temp_dir: str | None,
                 placements: list[Placement] | None = None):
        self.job, self.namespace, self.tasks, self.address = job, namespace, tasks, address
        self.temp_dir = temp_dir
        self.placements = list(placements or [SPREAD] * len(tasks))
        self._owns_ray, self._owns_actors = owns_ray, owns_actors
        self._actor_options = actor_options
        self._devices: dict[tuple, PsDevice] = {}
        self._lock = threading.Lock()
        self._restart_lock = threading.RLock()
        self.closed = False
        for t in tasks:
            t.explain = self._explain
            t.recoverer = self._recover_task

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
        ``node_id`` (Ray's node id, unique), ``node_address`` (the node's IP), ``host``
        (hostname, not unique), ``arrays``, ``bytes``.

        >>> cluster.current().info(1)["node_id"]              # doctest: +SKIP
        '9f1c...'
        """
        t = self._task(task)
        out = t.wait(t.submit("info"), timeout=timeout)
        t.node_id, t.node_address = out.get("node_id"), out.get("node_address")
        return out

    def ping(self, timeout: float = 10.0) -> list[str]:
        """Every task's incarnation, asked in parallel; UnavailableError names a task that does not answer."""
        refs = [(t, t.submit("ping")) for t in self.tasks]
        return [t.wait(r, timeout=timeout) for t, r in refs]

    def nodes(self) -> dict[int, str | None]:
        """Task index -> the id of the node it was placed on (what this process last saw)."""
        return {t.index: t.node_id for t in self.tasks}

    def restart_task(self, task: int, timeout: float | None = None, *,
                     placement: PlacementLike | str = "keep") -> dict:
        """Replace task ``task``'s actor with a fresh one (same name; its arrays are gone).

        Ray restarts a task whose process died by itself (``max_restarts``, on its node);
        this is for a task that is hung, has used up its restarts, or whose node is lost
        (``saver.restore`` does it for every lost task). The new actor goes where the
        task's placement says (``placement``: a new one replaces it; None spreads).
        Devices and variables keep working once their values are restored. Returns the
        new task's :meth:`info`.

        >>> cluster.current().restart_task(1)["node_id"]      # doctest: +SKIP
        """
        return self._begin_restart(self._task(task), placement)(timeout)

    def _begin_restart(self, t: PsTask, placement: PlacementLike | str = "keep") -> Any:
        """Kill ``t``'s actor and create its successor on a node its placement allows; returns
        the wait (``wait(timeout)`` gives the new task's info), so several restart at once."""
        ray = _ray()
        if self.closed:
            raise FailedPreconditionError(f"{self}: restart_task after shutdown")
        with self._restart_lock:
            if placement != "keep":
                self.placements[t.index] = _as_placement(placement, _live_nodes(ray))
            try:
                ray.kill(t.actor, no_restart=True)
            except Exception as e:  # noqa: BLE001 - already dead is fine
                log.info("killing %s: %s", t.name, e)
            live = _live_nodes(ray)
            load: dict[str, int] = {}
            for other in self.tasks:
                if other is not t and other.node_id:
                    load[other.node_id] = load.get(other.node_id, 0) + 1
            node = _choose_node(self.placements[t.index], t.gpus, live, load, _driver_node(ray),
                                f"ps task {t.name} cannot be placed again")
            deadline = time.monotonic() + t.timeout
            while True:  # the name is freed once the GCS has seen the old actor die
                try:
                    t.actor = _create_actor(ray, self.job, t.index, t.gpus, self.namespace, self._actor_options,
                                            node)
                    break
                except ValueError:
                    if time.monotonic() > deadline:
                        raise UnavailableError(
                            f"ps task {t.name}: could not restart it (its name is still taken)") from None
                    time.sleep(0.05)
            t.node_id, t.node_address = node, _node_address(live, node)
        ref = t.submit("info")

        def wait(timeout: float | None = None) -> dict:
            info = t.wait(ref, timeout=max(timeout or t.timeout, _START_TIMEOUT))
            t.node_id, t.node_address = info.get("node_id"), info.get("node_address")
            log.warning("restarted ps task %s on node %s (%s)", t.name, t.node_id, t.node_address)
            return info
        return wait

    def _recover_task(self, t: PsTask, seen: Any) -> Any:
        """Start restarting ``t``, found lost by a call to its actor ``seen``; None when another
        caller restarted it since (two devices of one task). Returns the restart's wait."""
        with self._restart_lock:
            if t.actor is not seen:
                return None
            return self._begin_restart(t)

    def _explain(self, t: PsTask) -> tuple[str, list[str], str | None]:
        """Why ``t`` is unavailable, for its error: (text, tasks lost with it, node id)."""
        if self.closed:
            return "", [t.name], t.node_id
        try:
            ray = _ray()
            live = {n["NodeID"] for n in _live_nodes(ray)}
        except Exception:  # noqa: BLE001 - only an explanation
            return "", [t.name], t.node_id
        node = t.node_id
        if node is None or node in live:
            return "", [t.name], node
        same = [o.name for o in self.tasks if o.node_id == node]
        try:  # can it be placed again? (a strict placement on the lost node cannot)
            _choose_node(self.placements[t.index], t.gpus, _live_nodes(ray), {}, None,
                         f"ps task {t.name} cannot be placed again")
            fix = (f"saver.restore(sess, path) restarts every lost task on a live node (this one's placement: "
                   f"{self.placements[t.index].describe()}) and restores their variables")
        except UnavailableError as e:
            fix = str(e)
        text = (f"its node {node[:12]} ({t.node_address or '?'}) is gone, with "
                f"{'ps tasks ' + ', '.join(same) if len(same) > 1 else 'this task'}, and Ray does not "
                f"place a lost task again: {fix}")
        return text, same, node

    def _task(self, task: int) -> PsTask:
        if not isinstance(task, int) or not 0 <= task < len(self.tasks):
            raise InvalidArgumentError(f"{self}: no ps task {task!r} (tasks 0..{len(self.tasks) - 1})")
        return self.tasks[task]

    def _close(self) -> None:
        self.closed = True
        for t in self.tasks:
            t.closed = True


def _driver_node(ray: Any) -> str | None:
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - only a preference
        return None


def _create_actor(ray: Any, job: str, index: int, gpus: int, namespace: str, options: dict,
                  node: str | None = None) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415
    cls = ray.remote(PsTaskServer)
    extra = {}
    if node is not None:
        # Strict: a process that dies is restarted on this node; a lost node leaves the task
        # dead at once (ActorUnschedulableError), for recovery to place it again. (Soft
        # affinity put two tasks on one node when tried, and a task pinned by a resource
        # that only the lost node had stayed RESTARTING for ever.)
        extra["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    return cls.options(
        name=_ACTOR_NAME.format(job=job, index=index), namespace=namespace,
        max_restarts=options["max_restarts"], max_task_retries=0,
        num_cpus=options["num_cpus_per_task"], num_gpus=gpus, **extra,
    ).remote(job, index, gpus)


def current() -> Cluster | None:
    """The cluster started or joined by this process, or None."""
    return _current


def start(ps_tasks: int = 1, *, address: str | None = None, placement: Sequence[PlacementLike] | None = None,
          job: str = "ps", gpus_per_task: int | Sequence[int] = 0,
          num_cpus: int | None = None, num_gpus: int | None = None,
          object_store_memory: int = DEFAULT_OBJECT_STORE_BYTES, temp_dir: str | None = None,
          namespace: str = DEFAULT_NAMESPACE, max_restarts: int = -1, timeout: float = DEFAULT_TIMEOUT,
          num_cpus_per_task: float = 0, register: bool = True) -> Cluster:
    """Create ``ps_tasks`` ps tasks and make them the current cluster.

    Where: ``address=None`` with Ray not yet initialized starts a local Ray on loopback
    (``num_cpus``, ``num_gpus``, ``object_store_memory`` in bytes, ``temp_dir`` for its
    sockets and logs); ``address="host:port"`` or ``"auto"`` joins that Ray cluster and
    creates the tasks there; with Ray already initialized in this process (``ray.init``),
    the tasks go on its cluster. :func:`shutdown` removes only the tasks created here
    (and leaves a joined cluster running).

    ``placement``: one per task, a node id, a resource label (strict), a
    :class:`Placement` (``soft=True`` falls back to any live node) or None (spread: one
    task per node while nodes remain, the driver's own node last). Default: all spread.
    It holds across restarts. ``gpus_per_task``: GPUs for each task's actor (an int, or
    one per task); a task with a GPU serves ``/job:ps/task:N/device:GPU:0`` with cupy.
    ``max_restarts``: how often Ray restarts a task whose process died (-1: always).
    ``timeout``: seconds any call may take (plus time for the bytes it moves) before
    UnavailableError.

    >>> c = start(ps_tasks=2, address="auto", placement=["ps_a", Placement(resource="ps_b", soft=True)])
    ...                                                       # doctest: +SKIP

    A local start takes a few seconds (``ray.init`` measured 2-4 s).
    """
    global _current
    if not isinstance(ps_tasks, int) or ps_tasks < 1:
        raise InvalidArgumentError(f"cluster.start: ps_tasks must be a positive int, received {ps_tasks!r}")
    DeviceSpec(job=job)  # validates the job name
    gpus = [int(gpus_per_task)] * ps_tasks if isinstance(gpus_per_task, int) else [int(g) for g in gpus_per_task]
    if len(gpus) != ps_tasks or any(g < 0 for g in gpus):
        raise InvalidArgumentError(f"cluster.start: gpus_per_task must be an int or {ps_tasks} non-negative ints, "
                                   f"received {gpus_per_task!r}")
    if placement is not None and (isinstance(placement, (str, Placement)) or len(placement) != ps_tasks):
        raise InvalidArgumentError(f"cluster.start: placement must hold one entry per task ({ps_tasks}), "
                                   f"received {placement!r}")
    with _lock:
        if _current is not None:
            raise FailedPreconditionError(f"a cluster is already current ({_current}); call "
                                          "devices.cluster.shutdown() first")
        ray = _ray(local=address is None and not _ray_initialized())
        local = address is None and not ray.is_initialized()
        owns_ray = not ray.is_initialized()
        if local:
            temp_dir = _local_ray(ray, temp_dir, namespace, object_store_memory, num_cpus, num_gpus)
        elif owns_ray:
            try:
                ray.init(address=address, namespace=namespace, logging_level=logging.WARNING)
            except Exception as e:  # noqa: BLE001 - ConnectionError and friends
                raise UnavailableError(f"cluster.start: cannot join the Ray cluster at {address}: {e}") from None
        tasks: list[PsTask] = []
        try:
            here = ray.get_runtime_context().gcs_address
            if address not in (None, "auto") and not owns_ray and address != here:
                raise FailedPreconditionError(
                    f"cluster.start: this process is connected to the Ray cluster at {here}, not {address}; "
                    "call ray.shutdown() first, or leave address out to use the connected one")
            have = ray.cluster_resources().get("GPU", 0)
            if sum(gpus) > have:
                raise InvalidArgumentError(f"cluster.start: the tasks ask for {sum(gpus)} GPU(s), "
                                           f"the cluster offers {have:g}")
            if local and not here.startswith(("127.", "localhost:", "[::1]")):
                raise UnavailableError(f"cluster.start: Ray listens on {here}, not on loopback; refusing "
                                       "to run a cluster reachable from outside this machine")
            live = _live_nodes(ray)
            places = [_as_placement(p, live) for p in (placement or [None] * ps_tasks)]
            _check_placements(places, live)
            options = {"max_restarts": int(max_restarts), "num_cpus_per_task": num_cpus_per_task}
            tasks, load, driver = [], {}, _driver_node(ray)
            for i, (g, p) in enumerate(zip(gpus, places)):
                name = f"/job:{job}/replica:0/task:{i}"
                node = _choose_node(p, g, live, load, driver, f"cluster.start: ps task {name}")
                load[node] = load.get(node, 0) + 1
                try:
                    actor = _create_actor(ray, job, i, g, namespace, options, node)
                except ValueError:
                    raise FailedPreconditionError(
                        f"cluster.start: ps task {name} already exists in namespace {namespace!r} of the cluster "
                        f"at {here} (another driver created it): join it with devices.cluster.connect({here!r}), "
                        "or pick another job= or namespace=") from None
                t = PsTask(job, i, actor, timeout, g)
                t.node_id, t.node_address = node, _node_address(live, node)
                tasks.append(t)
            c = Cluster(job, namespace, tasks, here, owns_ray, True, options, temp_dir, places)
            c.ping(timeout=max(timeout, _START_TIMEOUT))  # every task is up before anyone uses it
        except BaseException:
            for t in tasks:  # a joined cluster keeps running: leave nothing of ours on it
                try:
                    ray.kill(t.actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            if owns_ray:
                ray.shutdown()
            raise
        _current = c
        if register:
            c.register()
    log.info("started %s (%s)", c, ", ".join(f"task {t.index} on node {t.node_id}" for t in tasks))
    return c


def _ray_initialized() -> bool:
    """Whether Ray is imported and initialized, without importing it."""
    import sys  # noqa: PLC0415
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _local_ray(ray: Any, temp_dir: str | None, namespace: str, object_store_memory: int, num_cpus: int | None,
               num_gpus: int | None) -> str:
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
    return temp_dir


def _check_placements(places: list[Placement], live: list[dict]) -> None:
    ids = {n["NodeID"] for n in live}
    labels = sorted({r for n in live for r in n.get("Resources", {})
                     if r not in ("CPU", "GPU", "memory", "object_store_memory") and not r.startswith("node:")})
    for i, p in enumerate(places):
        if p.soft:
            continue
        if p.node and p.node not in ids:
            raise InvalidArgumentError(f"cluster.start: placement of task {i}: no live node {p.node!r} "
                                       f"(live nodes: {', '.join(sorted(ids))})")
        if p.resource and p.resource not in labels:
            raise InvalidArgumentError(f"cluster.start: placement of task {i}: no live node offers resource "
                                       f"{p.resource!r} (custom resources: {labels or 'none'}; a node id is "
                                       "56 hex digits)")


def connect(address: str, *, job: str = "ps", namespace: str = DEFAULT_NAMESPACE,
            ps_tasks: int | None = None, timeout: float = DEFAULT_TIMEOUT, register: bool = True) -> Cluster:
    """Join the Ray cluster at ``address`` (``Cluster.address`` of the process that started
    the tasks, ``"host:port"``, or ``"auto"``) and use its ps tasks (the actors named
    ``"<job>/task:N"`` in ``namespace``), without owning them: :func:`shutdown` only leaves.

    ``ps_tasks``: how many tasks to expect (default: every task found). Raises
    UnavailableError when the cluster or a task cannot be reached.

    >>> c = connect("127.0.0.1:6379")                         # doctest: +SKIP
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
            for entry in ray.util.list_named_actors(all_namespaces=True):
                name, ns = (entry, namespace) if isinstance(entry, str) else (entry.get("name", ""),
                                                                             entry.get("namespace"))
                m = _ACTOR_RE.match(name)
                if m and ns == namespace and m.group("job") == job:
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
                info = t.call("info", nbytes=0)
                t.gpus = int(info["gpus"])
                t.node_id, t.node_address = info.get("node_id"), info.get("node_address")
                tasks.append(t)
            c = Cluster(job, namespace, tasks, ray.get_runtime_context().gcs_address, owns, False,
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
    its tasks raise UnavailableError. The tasks this process created are removed; Ray is
    stopped if this process started it, left if it joined it (a cluster given by address
    keeps running).

    >>> shutdown()                                            # doctest: +SKIP
    """
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
