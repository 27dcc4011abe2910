#!/usr/bin/env python3
"""What ``Saver.save(..., async_save=True)`` costs against a blocking save, on the CPU.

    python scripts/async_save_cost.py              # 1 GiB in 16 float32 variables, 3 saves per mode
    python scripts/async_save_cost.py --gib 0.25 --repeat 5

For each mode, in a fresh process (so peak memory is its own): the time the calling
(training) thread is blocked in ``save``, the time until the checkpoint is durable, and
the peak resident memory above what the variables already hold (RSS sampled every
2 ms from /proc). For the async save it also runs training-like steps (an in-place
add over one 64 MiB variable) while the save is in the background, and compares
their time with the same steps when no save runs.

Tests never assert timings: this prints the figures for docs/ROBUSTNESS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples RSS in a thread; ``peak`` since the last ``reset``."""

    def __init__(self, period: float = 0.002):
        self.period, self.peak, self._stop = period, rss(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(self.period)

    def reset(self) -> None:
        self.peak = rss()

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def child(mode: str, gib: float, tensors: int, repeat: int, directory: str) -> dict:
    import varstore as tf
    per = int(gib * (1 << 30) / tensors) // 4
    vs = [tf.Variable(np.zeros(per, np.float32), name=f"w{i}") for i in range(tensors)]
    tf.global_variables_initializer().run()
    for i, v in enumerate(vs):
        v.load(np.full(per, i, np.float32))  # every page touched (load runs now)
    saver = tf.train.Saver(max_to_keep=1)
    step_var = vs[0]
    ones = tf.placeholder(tf.float32, [per])
    step_op = step_var.assign_add(ones).op  # TF 1.x: the op built once, one sess.run per step
    sess = tf.Session()
    feed = {ones: np.ones(per, np.float32)}

    def steps(seconds: float) -> list[float]:
        out, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            sess.run(step_op, feed_dict=feed)
            out.append(time.perf_counter() - t)
        return out

    idle = steps(1.0)
    sampler = PeakRSS()
    runs = []
    for r in range(repeat + 1):  # the first one warms up (directory, page cache)
        path = os.path.join(directory, "model.ckpt")
        base = rss()
        sampler.reset()
        t0 = time.perf_counter()
        out = saver.save(sess, path, global_step=r, async_save=mode == "async", write_meta_graph=False)
        blocked = time.perf_counter() - t0
        during = []
        if mode == "async":
            while not out.done():
                t = time.perf_counter()
                sess.run(step_op, feed_dict=feed)
                during.append(time.perf_counter() - t)
            out.result()
        total = time.perf_counter() - t0
        if r:
            runs.append({"blocked_s": blocked, "durable_s": total, "extra_peak_rss_mib": (sampler.peak - base) / 2**20,
                         "steps_during": len(during),
                         "step_ms_during": 1000 * statistics.median(during) if during else None})
    sampler.stop()
    return {"mode": mode, "gib": gib, "tensors": tensors, "idle_step_ms": 1000 * statistics.median(idle),
            "runs": runs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--tensors", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="where to save (default: a temporary directory)")
    ap.add_argument("--child", choices=["blocking", "async"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    directory = args.dir or tempfile.mkdtemp(prefix="async-save-cost-")
    if args.child:
        print(json.dumps(child(args.child, args.gib, args.tensors, args.repeat, directory)))
        return 0
    results = {}
    for mode in ("blocking", "async"):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--gib", str(args.gib),
               "--tensors", str(args.tensors), "--repeat", str(args.repeat), "--dir", directory]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.gib} GiB in {args.tensors} float32 variables, {args.repeat} saves per mode (median; all runs in "
          f"the JSON below), {os.cpu_count()} CPUs, saving to {directory}")
    print(f"{'mode':9} {'blocked':>9} {'durable':>9} {'extra peak RSS':>15}")
    for mode, res in results.items():
        runs = res["runs"]
        med = {k: statistics.median(r[k] for r in runs) for k in ("blocked_s", "durable_s", "extra_peak_rss_mib")}
        print(f"{mode:9} {med['blocked_s'] * 1000:7.0f} ms {med['durable_s'] * 1000:7.0f} ms "
              f"{med['extra_peak_rss_mib']:11.0f} MiB")
    a = results["async"]
    during = [r["step_ms_during"] for r in a["runs"] if r["step_ms_during"] is not None]
    if during:
        print(f"training step (graph mode: sess.run of an assign_add op fed its delta, in-place add over {args.gib / args.tensors * 1024:.0f} MiB): "
              f"{a['idle_step_ms']:.1f} ms alone, {statistics.median(during):.1f} ms while the async save writes "
              f"({statistics.median(r['steps_during'] for r in a['runs']):.0f} steps per save)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
