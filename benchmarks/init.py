"""Initializer speed on the CPU, against what a user would write with numpy instead.

(1) Initializing one big float32 variable (1 GiB by default) with random_normal,
    truncated_normal and random_uniform, each against its numpy equivalent drawing
    the same number of float32 values into fresh memory, in the same run, interleaved,
    median of --repeat runs. Both sides allocate fresh memory and draw on one thread
    (numpy's Generator is single-threaded; so is varstore's CPU path).
(2) Creating and initializing --count small variables (shape (64,), random_normal):
    creation alone, then one global_variables_initializer() run; time per variable.

Targets: (1) ratio <= 1.2; (2) create + init < 50 us per variable.

    python benchmarks/init.py                # 1 GiB, 5 interleaved repeats
    python benchmarks/init.py --size-mib 64  # quicker
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, whatever is installed

import varstore as tf  # noqa: E402

TARGET_RATIO = 1.2
TARGET_US = 50.0


# -- numpy equivalents ------------------------------------------------------------------------
def np_normal(rng, n, stddev):
    a = rng.standard_normal(n, dtype=np.float32)
    if stddev != 1.0:
        a *= np.float32(stddev)
    return a


def np_truncated(rng, n, stddev):
    """What a numpy user writes for TF's truncated_normal: redraw values beyond 2 stddev."""
    a = rng.standard_normal(n, dtype=np.float32)
    while True:
        bad = np.abs(a) > 2.0
        k = int(np.count_nonzero(bad))
        if not k:
            break
        a[bad] = rng.standard_normal(k, dtype=np.float32)
    if stddev != 1.0:
        a *= np.float32(stddev)
    return a


def np_uniform(rng, n, stddev):
    return rng.random(n, dtype=np.float32)


CASES = [
    # label, varstore constructor, numpy equivalent, stddev
    ("random_normal", lambda n, s: tf.random_normal([n], stddev=s), np_normal, 1.0),
    ("random_normal(stddev=0.35)", lambda n, s: tf.random_normal([n], stddev=s), np_normal, 0.35),
    ("truncated_normal", lambda n, s: tf.truncated_normal([n], stddev=s), np_truncated, 1.0),
    ("random_uniform", lambda n, s: tf.random_uniform([n]), np_uniform, 1.0),
]


def time_varstore(make, n, stddev):
    with tf.Graph().as_default():
        v = tf.Variable(make(n, stddev))
        t0, c0 = time.perf_counter(), time.thread_time()
        v.initializer.run()
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        assert v.shape == (n,)
    del v
    gc.collect()
    return dt, dc


def time_numpy(fn, n, stddev):
    rng = np.random.default_rng()
    t0, c0 = time.perf_counter(), time.thread_time()
    a = fn(rng, n, stddev)
    dt, dc = time.perf_counter() - t0, time.thread_time() - c0
    assert a.shape == (n,)
    del a
    gc.collect()
    return dt, dc


def big(size_mib: int, repeat: int, only: list[str] | None = None) -> list[tuple[str, float]]:
    n = size_mib * (1 << 20) // 4
    print(f"(1) one float32 variable of {size_mib} MiB ({n:,} values), median of {repeat} interleaved runs")
    print("    wall: elapsed time; cpu: this thread's CPU time (steadier when other processes compete)")
    print(f"    {'initializer':<28} {'varstore':>10} {'numpy':>10} {'ratio':>7} {'best-of':>8} {'cpu ratio':>10}"
          f"  (median wall ratio target <= {TARGET_RATIO})")
    results = []
    for label, make, np_fn, stddev in CASES:
        if only and label not in only:
            continue
        # warm up both once (page cache of the allocator, imports), untimed
        time_varstore(make, min(n, 1 << 20), stddev)
        time_numpy(np_fn, min(n, 1 << 20), stddev)
        vs, ns = [], []
        for i in range(repeat):
            if i % 2 == 0:
                vs.append(time_varstore(make, n, stddev))
                ns.append(time_numpy(np_fn, n, stddev))
            else:
                ns.append(time_numpy(np_fn, n, stddev))
                vs.append(time_varstore(make, n, stddev))
        v, m = statistics.median(w for w, _ in vs), statistics.median(w for w, _ in ns)
        ratio = v / m
        best = min(w for w, _ in vs) / min(w for w, _ in ns)  # less sensitive to interference
        cpu = statistics.median(c for _, c in vs) / statistics.median(c for _, c in ns)
        flag = "ok" if ratio <= TARGET_RATIO else "MISSED"
        print(f"    {label:<28} {v * 1e3:>8.0f}ms {m * 1e3:>8.0f}ms {ratio:>7.2f} {best:>8.2f} {cpu:>10.2f}  {flag}")
        results.append((label, ratio))
    return results


def small(count: int, repeat: int) -> float:
    print(f"(2) {count:,} variables of shape (64,) from random_normal, median of {repeat} runs")
    creates, inits, cpu_creates, cpu_inits = [], [], [], []
    for _ in range(repeat):
        with tf.Graph().as_default():
            gc.collect()
            gc.disable()
            try:
                t0, c0 = time.perf_counter(), time.thread_time()
                vs = [tf.Variable(tf.random_normal([64])) for _ in range(count)]
                t1, c1 = time.perf_counter(), time.thread_time()
                tf.global_variables_initializer().run()
                t2, c2 = time.perf_counter(), time.thread_time()
            finally:
                gc.enable()
            assert all(v.is_initialized for v in vs)
        creates.append(t1 - t0)
        inits.append(t2 - t1)
        cpu_creates.append(c1 - c0)
        cpu_inits.append(c2 - c1)
        del vs
    eager = []
    for _ in range(repeat):  # eager mode: each variable is initialized when it is created
        with tf.Graph().as_default(), tf.eager_mode():
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                vs = [tf.Variable(tf.random_normal([64])) for _ in range(count)]
                eager.append(time.perf_counter() - t0)
            finally:
                gc.enable()
            assert all(v.is_initialized for v in vs)
        del vs
    c = statistics.median(creates) / count * 1e6
    i = statistics.median(inits) / count * 1e6
    cc = statistics.median(cpu_creates) / count * 1e6
    ci = statistics.median(cpu_inits) / count * 1e6
    total = c + i
    flag = "ok" if total < TARGET_US else "MISSED"
    e = statistics.median(eager) / count * 1e6
    print("    graph mode (TF 1.x's default): create, then one global_variables_initializer run")
    print(f"    create {c:6.1f} us/variable wall, {cc:6.1f} us cpu")
    print(f"    init   {i:6.1f} us/variable wall, {ci:6.1f} us cpu (one global_variables_initializer run)")
    print(f"    total  {total:6.1f} us/variable wall, {cc + ci:6.1f} us cpu  target < {TARGET_US:.0f} us (wall)  {flag}")
    print(f"    eager mode (tf.eager_mode(): initialized when created): {e:6.1f} us/variable wall")
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mib", type=int, default=1024, help="size of the big variable (default 1024 = 1 GiB)")
    p.add_argument("--repeat", type=int, default=5, help="interleaved runs per case (median; default 5)")
    p.add_argument("--count", type=int, default=10_000, help="small variables to create (default 10000)")
    p.add_argument("--cases", nargs="+", choices=[c[0] for c in CASES], help="only these initializers")
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--skip-small", action="store_true")
    a = p.parse_args(argv)
    if a.size_mib <= 0 or a.repeat <= 0 or a.count <= 0:
        p.error("--size-mib, --repeat and --count must be positive")
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    if not a.skip_big:
        big(a.size_mib, a.repeat, a.cases)
    if not a.skip_small:
        small(a.count, a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
