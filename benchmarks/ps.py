"""apply_gradients on ps tasks against a hand-written Ray actor doing the same batched update.

    .venv/bin/python benchmarks/ps.py                   # (a) 16 x 16 MiB, (b) 2000 small; K = 1, 2
    .venv/bin/python benchmarks/ps.py --size-mib 4      # smaller (a)
    .venv/bin/python benchmarks/ps.py --optimizer sgd --steps 20

Both sides run on one local Ray cluster (loopback), started once:

- engine: varstore variables placed by ``replica_device_setter(ps_tasks=K)`` and one
  ``optimizer.apply_gradients(zip(grads, vars))`` per step (one batched call per task,
  gradients through ``ray.put``, the update on the task with varstore's CPU kernels).
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


def engine(shapes, k, optimizer, grads):
    """An apply_gradients step on variables placed on k ps tasks (k=0: the local CPU)."""
    g = tf.Graph()
    with g.as_default():
        where = tf.device(tf.train.replica_device_setter(ps_tasks=k)) if k else tf.device("/cpu:0")
        with where:
            vs = [tf.Variable(tf.zeros(s), name=f"v{i}") for i, s in enumerate(shapes)]
        tf.variables_initializer(vs).run()
        opt = tf.train.AdamOptimizer(0.001) if optimizer == "adam" else tf.train.GradientDescentOptimizer(0.01)
        opt.build(vs)
    pairs = list(zip(grads, vs))
    return lambda: opt.apply_gradients(pairs)


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
    args = p.parse_args(argv)

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
