"""apply_gradients on ps tasks against a hand-written Ray actor doing the same batched update.

    .venv/bin/python benchmarks/ps.py                   # (a) 16 x 16 MiB, (b) 2000 small; K = 1, 2
    .venv/bin/python benchmarks/ps.py --size-mib 4      # smaller (a)
    .venv/bin/python benchmarks/ps.py --optimizer sgd --steps 20
    .venv/bin/python benchmarks/ps.py --multinode       # 64 x 1 MiB over 2 tasks on a 3-node loopback cluster

Both sides run on one local Ray cluster (loopback), started once:

- engine: varstore variables placed by ``replica_device_setter(ps_tasks=K)``, the update
  op built once (``optimizer.apply_gradients`` over placeholders) and one
  ``sess.run(train, feed_dict=grads)`` per step (one batched call per task, gradients
  through ``ray.put``, the update on the task with varstore's CPU kernels).
- floor: K bare Ray actors holding numpy arrays; per step the driver ``ray.put``s each
  task's gradient list and calls ``apply`` on every actor, which runs the same kernels
  (``varstore.train.kernels.apply_dense``) over its arrays. No handles, no checks, no
  bookkeeping: what any engine must pay at least.
- local: the same step with the variables on this process's CPU (no Ray), for scale.

Engine, floor and local steps are taken in turns (engine, floor, local, engine, ...),
so that load from other processes falls on all three alike; times are medians of
``--steps`` steps of each after two warm-up rounds, in ms per step. The kernels run
with the same thread count on both sides (the actors' default). The engine's
per-step overhead for (b) is ``engine - floor``, also shown per variable.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import devices  # noqa: E402
import varstore as tf  # noqa: E402
from devices import cluster  # noqa: E402
from devices.backends.ps import BY_VALUE_MAX  # noqa: E402

HYPER = {"sgd": {"lr": 0.01}, "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}}
SLOTS = {"sgd": (), "adam": ("m", "v")}


class FloorPS:
    """The floor: a dict of arrays and one loop of kernel calls per step."""

    def __init__(self):
        self.vars: list = []
        self.slots: list = []

    def setup(self, shapes: list, slot_names: list) -> int:
        self.vars = [np.zeros(s, np.float32) for s in shapes]
        self.slots = [{n: np.zeros(s, np.float32) for n in slot_names} for s in shapes]
        return os.getpid()

    def apply(self, rule: str, hyper: dict, grads: list) -> None:
        from varstore.train import kernels
        cpu = devices.get_device("/cpu:0")
        for var, slots, g in zip(self.vars, self.slots, grads):
            kernels.apply_dense(rule, cpu, var, g, slots, **hyper)


def medians_ms(fns: list, steps: int) -> list:
    """Median ms per call of each function, run in turns (A B C A B C ...) after two warm-up
    rounds, so that noise from other processes falls on all of them alike."""
    for _ in range(2):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(steps):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) * 1e3 for ts in times]


def _session_step(g, vs, optimizer, grads):
    """TF 1.x training in graph ``g``: the update op built once over placeholders, then one
    ``sess.run(train, feed_dict=...)`` per step (the gradients fed, as a user's are)."""
    with g.as_default():
        holders = [tf.placeholder(tf.float32, x.shape) for x in grads]
        opt = tf.train.AdamOptimizer(0.001) if optimizer == "adam" else tf.train.GradientDescentOptimizer(0.01)
        train = opt.apply_gradients(zip(holders, vs))
        sess = tf.Session(graph=g)
        sess.run(tf.global_variables_initializer())
    feed = dict(zip(holders, grads))
    return lambda: sess.run(train, feed_dict=feed)


def engine(shapes, k, optimizer, grads):
    """An apply_gradients step on variables placed on k ps tasks (k=0: the local CPU)."""
    g = tf.Graph()
    with g.as_default():
        where = tf.device(tf.train.replica_device_setter(ps_tasks=k)) if k else tf.device("/cpu:0")
        with where:
            vs = [tf.Variable(tf.zeros(s), name=f"v{i}") for i, s in enumerate(shapes)]
    return _session_step(g, vs, optimizer, grads)


def floor(shapes, k, optimizer, grads):
    """The same step through k bare actors; returns (step, cleanup)."""
    import ray
    actor_cls = ray.remote(num_cpus=0)(FloorPS)
    actors = [actor_cls.remote() for _ in range(k)]
    parts = [list(range(i, len(shapes), k)) for i in range(k)]  # round-robin, as the engine places them
    ray.get([a.setup.remote([shapes[j] for j in part], list(SLOTS[optimizer]))
             for a, part in zip(actors, parts)])
    hyper = HYPER[optimizer]
    per_task = [[grads[j] for j in part] for part in parts]

    def step():
        refs = []
        for a, g in zip(actors, per_task):
            data = ray.put(g) if sum(x.nbytes for x in g) >= BY_VALUE_MAX else g
            refs.append(a.apply.remote(optimizer, hyper, data))
        ray.get(refs)

    def cleanup():
        for a in actors:
            ray.kill(a)
    return step, cleanup


def engine_on(tasks, shapes, optimizer, grads, streaming=None):
    """An apply_gradients step on variables placed round-robin on the given ps tasks; with
    ``streaming`` set, those tasks' gradient stream forced on (True) or off (False)."""
    c = cluster.current()
    for i in tasks:
        c.tasks[i].streaming = streaming
    g = tf.Graph()
    with g.as_default():
        vs = []
        for i, s in enumerate(shapes):
            with tf.device(f"/job:ps/task:{tasks[i % len(tasks)]}"):
                vs.append(tf.Variable(tf.zeros(s), name=f"v{i}"))
    run = _session_step(g, vs, optimizer, grads)

    def step():
        for i in tasks:
            c.tasks[i].streaming = streaming
        run()
    return step


def floor_on(nodes, shapes, optimizer, grads):
    """The hand-written actor: one bare actor per node in ``nodes`` (pinned there), ray.put of
    each task's gradient list and one apply call per actor per step; returns (step, cleanup)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    actor_cls = ray.remote(num_cpus=0)(FloorPS)
    actors = [actor_cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
              for n in nodes]
    k = len(actors)
    parts = [list(range(i, len(shapes), k)) for i in range(k)]
    ray.get([a.setup.remote([shapes[j] for j in part], list(SLOTS[optimizer])) for a, part in zip(actors, parts)])
    hyper = HYPER[optimizer]
    per_task = [[grads[j] for j in part] for part in parts]

    def step():
        refs = [a.apply.remote(optimizer, hyper, ray.put(g)) for a, g in zip(actors, per_task)]
        ray.get(refs)

    def cleanup():
        for a in actors:
            ray.kill(a)
    return step, cleanup


def multinode(args) -> int:
    """Cross-node steps on a loopback cluster: a head (this driver) and two worker nodes built
    with ray.cluster_utils.Cluster, as a user's cluster of three machines would be."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    monitor = "RAY_memory_monitor_refresh_ms"  # Ray's spelling: other jobs' memory must not kill our workers
    os.environ[monitor] = "0"
    temp = tempfile.mkdtemp(prefix="vs-bmn-")
    os.environ["RAY_TMPDIR"] = temp  # Ray's "current cluster" file: ours, not the machine's
    os.makedirs(os.path.join(temp, "ray"))
    import ray
    from ray.cluster_utils import Cluster
    count, size = args.mn_count, int(args.mn_size_mib * (1 << 20)) // 4
    store = max(256 << 20, 6 * count * size * 4)
    node = dict(num_cpus=1, object_store_memory=store, node_ip_address="127.0.0.1")
    rc = Cluster(initialize_head=True, head_node_args=dict(node, include_dashboard=False,
                                                           temp_dir=os.path.join(temp, "ray")))
    rows = []
    try:
        w1, w2 = rc.add_node(**node), rc.add_node(**node)
        ray.init(address=rc.address, logging_level="WARNING")
        head = ray.get_runtime_context().get_node_id()
        # Tasks 0, 1 on the worker nodes (cross-node), 2, 3 on the driver's node (single node).
        cluster.start(ps_tasks=4, placement=[w1.node_id, w2.node_id, head, head])
        from varstore.train import kernels
        print(f"ps multi-node benchmark: {args.optimizer}, {count} x {args.mn_size_mib:g} MiB over 2 tasks, "
              f"{args.steps} steps (median), {os.cpu_count()} CPUs, kernel threads {kernels.get_threads()}, "
              f"Ray {ray.__version__}, 3 nodes on loopback")
        rng = np.random.default_rng(0)
        shapes = [(size,)] * count
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        variants = [("cross-node: engine, gradient stream", lambda: engine_on([0, 1], shapes, args.optimizer,
                                                                              grads, True)),
                    ("cross-node: engine, via object store", lambda: engine_on([0, 1], shapes, args.optimizer,
                                                                               grads, False)),
                    ("cross-node: hand-written actor", lambda: floor_on([w1.node_id, w2.node_id], shapes,
                                                                        args.optimizer, grads)),
                    ("single node: engine", lambda: engine_on([2, 3], shapes, args.optimizer, grads, None)),
                    ("single node: hand-written actor", lambda: floor_on([head, head], shapes, args.optimizer,
                                                                         grads))]
        fns, cleanups = [], []
        for _, make in variants:
            made = make()
            if isinstance(made, tuple):
                fns.append(made[0])
                cleanups.append(made[1])
            else:
                fns.append(made)
        try:
            ms = medians_ms(fns, args.steps)
        finally:
            for cleanup in cleanups:
                cleanup()
        rows = [(label, m) for (label, _), m in zip(variants, ms)]
    finally:
        cluster.shutdown()
        ray.shutdown()
        rc.shutdown()
        shutil.rmtree(temp, ignore_errors=True)  # Ray's sockets and logs
    base = rows[2][1]
    print()
    print(f"| {args.optimizer}, {count} x {args.mn_size_mib:g} MiB, 2 tasks | ms/step | vs hand-written actor "
          "across nodes |")
    print("| --- | --- | --- |")
    for label, m in rows:
        print(f"| {label} | {m:.2f} | {m / base:.2f}x |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=float, default=16.0, help="size of each big variable in (a) (16)")
    p.add_argument("--count", type=int, default=16, help="number of big variables in (a) (16)")
    p.add_argument("--small", type=int, default=2000, help="number of small variables in (b) (2000)")
    p.add_argument("--small-elems", type=int, default=256, help="float32 elements per small variable (256)")
    p.add_argument("--tasks", type=int, nargs="+", default=[1, 2], help="ps task counts (1 2)")
    p.add_argument("--steps", type=int, default=20, help="timed steps of each kind, taken in turns (20)")
    p.add_argument("--optimizer", choices=sorted(HYPER), default="adam")
    p.add_argument("--no-local", action="store_true", help="skip the local-CPU column")
    p.add_argument("--multinode", action="store_true",
                   help="cross-node steps on a loopback 3-node cluster (ray.cluster_utils.Cluster) instead")
    p.add_argument("--mn-count", type=int, default=64, help="variables in --multinode (64)")
    p.add_argument("--mn-size-mib", type=float, default=1.0, help="MiB per variable in --multinode (1)")
    args = p.parse_args(argv)
    if args.multinode:
        return multinode(args)

    big = max(1, int(args.size_mib * (1 << 20)) // 4)
    cases = [(f"(a) {args.count} x {args.size_mib:g} MiB", [(big,)] * args.count),
             (f"(b) {args.small} x {args.small_elems * 4} B", [(args.small_elems,)] * args.small)]
    total = max(sum(int(np.prod(s)) * 4 for s in shapes) for _, shapes in cases)
    store = max(1 << 30, 4 * total)
    c = cluster.start(ps_tasks=max(args.tasks), object_store_memory=store,
                      temp_dir=tempfile.mkdtemp(prefix="vs-bench-"))
    from varstore.train import kernels
    print(f"ps benchmark: {args.optimizer}, tasks {args.tasks}, {args.steps} steps (median), "
          f"{os.cpu_count()} CPUs, kernel threads {kernels.get_threads()}, Ray {__import__('ray').__version__}, "
          f"cluster {c.address}")
    rows = []
    try:
        rng = np.random.default_rng(0)
        for label, shapes in cases:
            grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
            for k in args.tasks:
                fns = [engine(shapes, k, args.optimizer, grads)]
                floor_step, cleanup = floor(shapes, k, args.optimizer, grads)
                fns.append(floor_step)
                if not args.no_local:
                    fns.append(engine(shapes, 0, args.optimizer, grads))
                try:
                    ms = medians_ms(fns, args.steps)
                finally:
                    cleanup()
                eng, flo = ms[0], ms[1]
                local = ms[2] if len(ms) > 2 else None
                rows.append((label, k, eng, flo, local, len(shapes)))
                print(f"  {label:<22} K={k}: engine {eng:9.2f} ms  floor {flo:9.2f} ms  ratio {eng / flo:5.2f}",
                      flush=True)
                del fns
                gc.collect()
                c.ping()  # the tasks drop the collected variables now
    finally:
        cluster.shutdown()

    print()
    print("| case | K | engine ms/step | floor ms/step | engine / floor | local CPU ms/step |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, k, eng, flo, local, _ in rows:
        loc = "-" if local is None else f"{local:.2f}"
        print(f"| {label} | {k} | {eng:.2f} | {flo:.2f} | {eng / flo:.2f}x | {loc} |")
    print()
    for label, k, eng, flo, _, n in rows:
        if label.startswith("(b)"):
            print(f"(b) per-step overhead over the floor, K={k}: {eng - flo:.2f} ms "
                  f"({(eng - flo) * 1e3 / n:.2f} us per variable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
