#!/usr/bin/env python3
"""GPU benchmarks for varstore, all on one card in one run (issue 8).

What it measures, each against what bounds it on the same card:

- bandwidth: device-to-device copy (cudaMemcpy, counting bytes read + written),
  pinned device-to-host and host-to-device, pageable host-to-device;
- adam: varstore's fused Adam kernel step against ``torch.optim.Adam(fused=True)``
  on the same parameters (target <= 1.1x torch's time), and as a fraction of the
  measured device-to-device bandwidth at 28 B per element (read param, grad, m, v;
  write param, m, v; target >= 80%); the full ``AdamOptimizer`` step through the
  public API is reported too, in both execution modes (below);
- adam_small: the whole step (``AdamOptimizer``, one multi-tensor launch) over 500
  small tensors of mixed shapes against ``torch.optim.Adam(fused=True)`` on copies of
  the same values (target <= 1.1x torch's time): launches and Python per tensor, not
  bandwidth, are what this case measures. Both modes are timed: "graph" is TF 1.x's
  loop (the train op built once over a placeholder per gradient, ``sess.run(train,
  feed_dict=...)`` with the cupy gradients fed each step), "eager" is
  ``opt.apply_gradients(pairs)`` under ``tf.eager_mode()`` (a numpy/torch-style loop);
- gather: bytes of a GPU array to the host for a checkpoint, through
  ``devices.host_chunks`` (pinned, double-buffered) alone and through
  ``write_checkpoint`` to /dev/shm (RAM, so the disk is not the limit), both as a
  fraction of the measured pinned device-to-host bandwidth (target >= 80%);
- async_save: an Adam step's latency (graph mode: ``sess.run(train)`` with the
  gradients fed, and a sync of the caller's stream, as a training loop that reads its loss) while ``saver.save(...,
  async_save=True)`` of the same GPU variables is writing, against the same step with
  no save in flight; the time the ``save`` call itself takes (the snapshot);
- save: ``Saver.save`` of an 8 GiB GPU model: host RSS growth (target <= 256 MiB
  beyond the pinned staging buffers) and throughput;
- restore: ``Saver.restore`` of that checkpoint into the existing GPU variables:
  throughput, and peak host RSS growth, which must stay within 2x the pinned staging
  plus a small margin. This bound is the one figure that FAILS the run (exit code 3):
  a restore that grows RSS with the model is a bug, not a slow card.

Timing: CUDA events around device work, a synchronize before any wall-clock
reading, warm-up runs first, the median of many runs. Data is random (never
zeros). Progress goes to stdout (``scripts/gpu-check`` keeps it in its log);
``--json`` writes every figure for the summary table.

``--dry-run`` runs every code path at tiny sizes on a CPU machine, with
``tests/fakecupy`` standing in for cupy and the CPU kernels for the GPU ones:
it proves this script, not the card. Its figures mean nothing.

    python benchmarks/gpu.py --json out.json            # on a card, defaults (~2 min on an H100)
    PYTHONPATH=tests/fakecupy python benchmarks/gpu.py --dry-run
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTION_NAMES = ("bandwidth", "adam", "adam_small", "gather", "async_save", "save")
MiB = 1 << 20
GiB = 1 << 30
TARGETS = {"adam_vs_torch": 1.1, "adam_bw_fraction": 0.80, "gather_fraction": 0.80, "save_rss_mib": 256}
EXIT_GATE = 3  # a bound that fails the run was exceeded (scripts/gpu-check reports it by name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true",
                   help="tiny sizes, fakecupy standing in for cupy: proves the script, not the card")
    p.add_argument("--copy-mib", type=int, default=1024, help="buffer for the device-to-device copy (MiB)")
    p.add_argument("--transfer-mib", type=int, default=512, help="buffer for host<->device copies (MiB)")
    p.add_argument("--adam-mib", type=int, default=1024, help="float32 parameters for the Adam step (MiB)")
    p.add_argument("--adam-tensors", type=int, default=8, help="how many tensors those parameters are split into")
    p.add_argument("--small-tensors", type=int, default=500, help="tensors in the many-small-tensor Adam case")
    p.add_argument("--small-max-elems", type=int, default=64 * 1024,
                   help="largest of those tensors (elements; shapes are drawn below it)")
    p.add_argument("--gather-mib", type=int, default=2048, help="GPU array gathered to the host (MiB)")
    p.add_argument("--async-gib", type=float, default=2.0,
                   help="GPU model stepped with Adam while an async save of it writes (GiB)")
    p.add_argument("--async-vars", type=int, default=16, help="variables in that model")
    p.add_argument("--async-saves", type=int, default=3, help="most async saves to time steps during")
    p.add_argument("--async-min-steps", type=int, default=30,
                   help="stop starting async saves once this many steps ran during one")
    # 16 variables of 512 MiB: a restore that copies one whole tensor to the host (the bug
    # the RSS bound is for) then outgrows the bound by itself; 32 of 256 MiB would not.
    p.add_argument("--save-gib", type=float, default=8.0, help="GPU model saved and restored (GiB)")
    p.add_argument("--save-vars", type=int, default=16, help="variables in that model")
    p.add_argument("--restore-rss-margin-mib", type=float, default=32,
                   help="restore's RSS bound is 2x the pinned staging plus this (MiB)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs of device work (median reported)")
    p.add_argument("--io-repeats", type=int, default=3, help="timed runs of gathers and checkpoint writes")
    p.add_argument("--save-repeats", type=int, default=2, help="timed saves and restores of the big model")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    p.add_argument("--scratch", default=None,
                   help="directory for checkpoints (default: /dev/shm when it has room, else the temp dir)")
    p.add_argument("--only", default=None,
                   help="comma-separated sections to run (" + ",".join(SECTION_NAMES) + "); default all")
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args(argv)
    if a.dry_run:
        a.copy_mib, a.transfer_mib, a.adam_mib, a.adam_tensors = 8, 8, 4, 4
        # 3 variables of 16 MiB: each is bigger than the dry run's restore RSS bound (12 MiB).
        a.gather_mib, a.save_gib, a.save_vars = 16, 48 / 1024, 3
        a.repeats, a.io_repeats, a.save_repeats, a.warmup = 5, 2, 1, 1
        # 500 tensors still (the count is the point of the case), just small ones.
        a.small_max_elems = 4096
        a.async_gib, a.async_vars, a.async_saves, a.async_min_steps = 24 / 1024, 4, 2, 3
        a.restore_rss_margin_mib = 8
    return a


# -- measurement helpers ------------------------------------------------------------------------------
def say(msg: str) -> None:
    print(msg, flush=True)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRSS:
    """Peak resident-memory growth of this process inside the block: the kernel's high-water mark
    after resetting it (/proc/self/clear_refs = 5) where allowed, and a 2 ms VmRSS sampler."""

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.hwm_reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.hwm_reset = _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024
        except OSError:
            pass
        self.base = _status_kib("VmRSS") << 10
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _status_kib("VmRSS") << 10)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("VmRSS") << 10)
        if self.hwm_reset:
            self.peak = max(self.peak, _status_kib("VmHWM") << 10)
        self.growth = self.peak - self.base


class Bench:
    def __init__(self, args: argparse.Namespace, cp: Any):
        self.args, self.cp = args, cp
        self.fake = bool(getattr(cp, "__fakecupy__", False))
        self.metrics: list[dict] = []
        self.errors: list[dict] = []
        self.info: dict = {}

    # results -------------------------------------------------------------------
    def metric(self, name: str, value: float, unit: str, target: str | None = None,
               ok: bool | None = None, note: str = "", gate: bool = False) -> None:
        """Record a figure. ``ok`` is a target's verdict, reported only; with ``gate`` it is a
        bound that fails the run, judged in the dry run too (only host-side figures are gates,
        and the stand-in's host memory is real)."""
        if self.fake and not gate:
            ok = None  # figures of the stand-in say nothing about a card
        self.metrics.append({"name": name, "value": value, "unit": unit, "target": target, "ok": ok, "note": note,
                             "gate": gate})
        verdict = "" if ok is None else ("  [ok]" if ok else ("  [FAILED]" if gate else "  [MISSED]"))
        say(f"  {name:<52} {value:>10.4g} {unit:<5} {('target ' + target) if target else ''}{verdict}"
            f"{('  ' + note) if note else ''}")

    # timing ----------------------------------------------------------------------
    def sync(self) -> None:
        self.cp.cuda.Device().synchronize()

    def gpu_time(self, fn: Callable[[], Any], repeats: int | None = None, warmup: int | None = None) -> float:
        """Median seconds of ``fn`` measured with CUDA events on the current stream."""
        cp = self.cp
        for _ in range(self.args.warmup if warmup is None else warmup):
            fn()
        self.sync()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        times = []
        for _ in range(repeats or self.args.repeats):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
        return statistics.median(times)

    def wall_time(self, fn: Callable[[], Any], repeats: int, warmup: int = 1,
                  between: Callable[[], Any] | None = None) -> float:
        """Median wall-clock seconds of ``fn`` (device synchronized before reading the clock)."""
        for _ in range(warmup):
            fn()
            if between:
                between()
        times = []
        for _ in range(repeats):
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t0)
            if between:
                between()
        return statistics.median(times)

    def stream_sync(self) -> None:
        """Wait for the caller's stream only (a training loop reading its loss), not for other
        streams: a device-wide sync would also wait for an async save's copies."""
        self.cp.cuda.get_current_stream().synchronize()

    def random(self, n: int, dtype: Any = np.float32, seed: int = 0, scale: float = 1.0, positive: bool = False):
        """Random float32/float64 device data drawn on the device, never zeros."""
        dt = np.dtype(dtype)
        a = self.cp.empty(n, dt)
        self.cp.random.default_rng(seed).standard_normal(dtype=dt, out=a)
        if positive:
            self.cp.abs(a, out=a)
            a += dt.type(1e-3)
        if scale != 1.0:
            a *= dt.type(scale)
        return a


# -- sections -------------------------------------------------------------------------------------------
def bench_bandwidth(b: Bench) -> None:
    cp, rt = b.cp, b.cp.cuda.runtime
    say("\n[bandwidth]")
    n = b.args.copy_mib * MiB
    src = b.random(n // 4, seed=1)
    dst = cp.empty_like(src)

    def d2d():
        rt.memcpyAsync(dst.data.ptr, src.data.ptr, n, rt.memcpyDeviceToDevice, cp.cuda.get_current_stream().ptr)
    t = b.gpu_time(d2d)
    b.info["d2d_bytes_per_s"] = 2 * n / t
    b.metric("d2d copy (cudaMemcpy, read+write)", 2 * n / t / 1e9, "GB/s")

    def kernel_copy():
        cp.copyto(dst, src)
    t = b.gpu_time(kernel_copy)
    b.metric("d2d copy (elementwise kernel, read+write)", 2 * n / t / 1e9, "GB/s")
    del src, dst

    n = b.args.transfer_mib * MiB
    dev = b.random(n // 4, seed=2)
    pinned = np.frombuffer(cp.cuda.alloc_pinned_memory(n), np.uint8, n)
    pinned[:] = 1  # touch it
    stream = cp.cuda.get_current_stream()

    def d2h():
        rt.memcpyAsync(pinned.ctypes.data, dev.data.ptr, n, rt.memcpyDeviceToHost, stream.ptr)
    t = b.gpu_time(d2h, repeats=max(5, b.args.repeats // 3))
    b.info["d2h_pinned_bytes_per_s"] = n / t
    b.metric("d2h pinned", n / t / 1e9, "GB/s")

    def h2d():
        rt.memcpyAsync(dev.data.ptr, pinned.ctypes.data, n, rt.memcpyHostToDevice, stream.ptr)
    t = b.gpu_time(h2d, repeats=max(5, b.args.repeats // 3))
    b.info["h2d_pinned_bytes_per_s"] = n / t
    b.metric("h2d pinned", n / t / 1e9, "GB/s")

    pageable = np.random.default_rng(3).standard_normal(n // 4).astype(np.float32)

    def h2d_pageable():
        dev.set(pageable)
    t = b.wall_time(h2d_pageable, repeats=max(3, b.args.io_repeats))
    b.info["h2d_pageable_bytes_per_s"] = n / t
    b.metric("h2d pageable (ndarray.set)", n / t / 1e9, "GB/s")
    del dev, pinned, pageable


def _adam_kernel_step(b: Bench):
    """varstore's Adam kernel through its dispatch (the CPU kernel under the dry run's stand-in)."""
    from varstore.train import kernels
    if b.fake:
        from varstore.train.kernels import cpu as cpu_kernels

        def step(dev, p, g, m, v, **h):
            cpu_kernels.apply_dense("adam", b.cp.unwrap(p), b.cp.unwrap(g), {"m": b.cp.unwrap(m), "v": b.cp.unwrap(v)}, **h)
        return step

    def step(dev, p, g, m, v, **h):
        kernels.apply_dense("adam", dev, p, g, {"m": m, "v": v}, **h)
    return step


def bench_adam(b: Bench) -> None:
    import devices
    say("\n[adam]")
    dev = devices.get_device("/gpu:0")
    total = b.args.adam_mib * MiB // 4
    k = max(1, b.args.adam_tensors)
    sizes = [total // k + (1 if i < total % k else 0) for i in range(k)]
    n = sum(sizes)
    params = [b.random(s, seed=10 + i) for i, s in enumerate(sizes)]
    grads = [b.random(s, seed=100 + i, scale=0.1) for i, s in enumerate(sizes)]
    ms = [b.random(s, seed=200 + i, scale=0.01) for i, s in enumerate(sizes)]
    vs = [b.random(s, seed=300 + i, scale=0.001, positive=True) for i, s in enumerate(sizes)]
    lr, b1, b2, eps = 1e-4, 0.9, 0.999, 1e-8
    hyper = {"lr": lr * np.sqrt(1 - b2 ** 10) / (1 - b1 ** 10), "beta1": b1, "beta2": b2, "epsilon": eps}
    kstep = _adam_kernel_step(b)
    # torch gets copies of the same starting values (taken before varstore's steps change them).
    start = [(p.copy(), g.copy(), m.copy(), v.copy()) for p, g, m, v in zip(params, grads, ms, vs)]

    def vs_step():
        for p, g, m, v in zip(params, grads, ms, vs):
            kstep(dev, p, g, m, v, **hyper)
    t_vs = b.gpu_time(vs_step)
    bw = 28 * n / t_vs
    d2d = b.info.get("d2d_bytes_per_s")
    b.info["adam_varstore_s"] = t_vs
    b.metric(f"varstore Adam step ({n / 2**20:.0f} Mi elems, {k} tensors)", t_vs * 1e3, "ms")
    if d2d:
        frac = bw / d2d
        b.metric("varstore Adam, 28 B/elem vs d2d copy", frac, "x", f">= {TARGETS['adam_bw_fraction']}",
                 frac >= TARGETS["adam_bw_fraction"], f"{bw / 1e9:.0f} GB/s")

    try:
        import torch
    except Exception as e:  # noqa: BLE001
        b.metric("torch fused Adam", float("nan"), "ms", note=f"torch unavailable: {e}")
        return
    tdev = "cpu" if b.fake else "cuda"
    if not b.fake and not torch.cuda.is_available():
        b.metric("torch fused Adam", float("nan"), "ms", note="torch has no CUDA")
        return
    torch.manual_seed(0)
    # The same parameters: copies of the same device arrays, shared with torch through DLPack.
    tparams = []
    for p, g, _m, _v in start:
        tp = torch.from_dlpack(p).requires_grad_(True)
        tp.grad = torch.from_dlpack(g)
        tparams.append(tp)
    opt = torch.optim.Adam(tparams, lr=lr, betas=(b1, b2), eps=eps, fused=True)
    assert tparams[0].device.type == tdev
    for _ in range(max(1, b.args.warmup)):
        opt.step()  # the first step creates the state
    for st, (_p, _g, m, v) in zip((opt.state[p] for p in tparams), start):  # varstore's starting moments
        st["exp_avg"].copy_(torch.from_dlpack(m))
        st["exp_avg_sq"].copy_(torch.from_dlpack(v))
    if b.fake:
        t_torch = b.wall_time(opt.step, repeats=b.args.repeats, warmup=b.args.warmup)
    else:
        torch.cuda.synchronize()
        for _ in range(b.args.warmup):
            opt.step()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(b.args.repeats):
            start.record()
            opt.step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        t_torch = statistics.median(times)
    b.info["adam_torch_s"] = t_torch
    b.metric("torch.optim.Adam(fused=True) step", t_torch * 1e3, "ms",
             note=f"{28 * n / t_torch / 1e9:.0f} GB/s at 28 B/elem")
    ratio = t_vs / t_torch
    b.metric("varstore / torch fused Adam time", ratio, "x", f"<= {TARGETS['adam_vs_torch']}",
             ratio <= TARGETS["adam_vs_torch"])
    del tparams, opt, start

    # The whole optimizer step through the public API (beta powers, dispatch, Python).
    import varstore as tf
    g = tf.Graph()
    with g.as_default():
        with tf.device("/gpu:0"):
            tvars = [tf.Variable(tf.zeros([s]), name=f"p{i}") for i, s in enumerate(sizes)]
        tf.global_variables_initializer().run()
        for tv, p in zip(tvars, params):
            tv.load(p)
        aopt = tf.train.AdamOptimizer(lr)
        if b.fake:
            _route_fake_kernels(b)
        steps = public_adam_steps(tf, g, aopt, tvars, grads)
        for mode, step in steps.items():
            t_full = b.wall_time(step, repeats=max(5, b.args.repeats // 3), warmup=b.args.warmup)
            b.metric(f"Adam step, public API, {mode} mode", t_full * 1e3, "ms",
                     note=f"{t_full / t_vs:.2f}x the kernel step; {MODE_LABEL[mode]}")
    del g, tvars, aopt, steps


def public_adam_steps(tf: Any, graph: Any, opt: Any, tvars: list, grads: list) -> dict[str, Callable[[], Any]]:
    """One step of ``opt`` through the public API, per execution mode:

    - "graph": TF 1.x's loop: the train op built once over one placeholder per gradient,
      then ``sess.run(train, feed_dict=...)`` with the cupy gradients fed (no host copy);
    - "eager": ``opt.apply_gradients(pairs)`` under ``tf.eager_mode()``, applied at the call.

    The slots (and Adam's beta powers) are made and initialized here, before any timing.
    """
    with graph.as_default():
        phs = [tf.placeholder(gr.dtype, list(v.shape), name=f"grad{i}") for i, (gr, v) in enumerate(zip(grads, tvars))]
        train = opt.apply_gradients(zip(phs, tvars))
        sess = tf.Session(graph=graph)
        sess.run(tf.variables_initializer(opt.variables()))
    feed = dict(zip(phs, grads))
    pairs = list(zip(grads, tvars))

    def graph_step() -> None:
        sess.run(train, feed_dict=feed)

    def eager_step() -> None:
        with tf.eager_mode():
            opt.apply_gradients(pairs)

    return {"graph": graph_step, "eager": eager_step}


MODE_LABEL = {"graph": "graph mode: sess.run(train), cupy grads fed", "eager": "eager mode: apply_gradients"}


def _route_fake_kernels(b: Bench) -> None:
    """Dry run only: GPU updates go to the CPU kernels on the numpy arrays behind the fake arrays."""
    from varstore.train import kernels
    from varstore.train.kernels import cpu as cpu_kernels
    if getattr(kernels, "_fakecupy_routed", False):
        return
    orig = kernels.apply_dense

    def dense(rule, dev, var, grad, slots, **hyper):
        if getattr(dev, "kind", None) == "gpu":
            return cpu_kernels.apply_dense(rule, b.cp.unwrap(var), b.cp.unwrap(grad), b.cp.unwrap(dict(slots)), **hyper)
        return orig(rule, dev, var, grad, slots, **hyper)
    kernels.apply_dense = dense

    # The optimizer's GPU path: one multi-tensor call per device (Adam's powers read on the host here).
    from varstore.train.kernels import gpu as gpu_kernels

    def group(rule, items, powers=None, **hyper):
        b.cp.cuda.get_current_stream().synchronize()
        if powers is not None:
            b1p, b2p = (float(p.get()) for p in powers)
            hyper = dict(hyper, lr=hyper["lr"] * (1.0 - b2p) ** 0.5 / (1.0 - b1p))
        for var, grad, slots in items:
            cpu_kernels.apply_dense(rule, b.cp.unwrap(var), b.cp.unwrap(grad), b.cp.unwrap(dict(slots)), **hyper)
    gpu_kernels.apply_group = group
    kernels._fakecupy_routed = True


def small_shapes(count: int, max_elems: int, seed: int = 0) -> list[tuple[int, ...]]:
    """Shapes as a model has them: biases and norms (1-D), dense weights (2-D), conv kernels
    (4-D), with odd sizes among them so the multi-tensor chunks do not all end on round
    boundaries. Deterministic, so runs on different cards time the same work."""
    rng = np.random.default_rng(seed)
    dims = [1, 3, 17, 32, 64, 96, 100, 128, 255, 256, 384, 512, 768, 1000, 1024]
    shapes = []
    for i in range(count):
        a, c = (int(x) for x in rng.choice(dims, 2))
        shape = [[a], [a, c], [max(1, a // 8), max(1, c // 8), 3, 3], [4 * a + 1]][i % 4]
        while int(np.prod(shape)) > max_elems:
            j = int(np.argmax(shape))
            shape[j] = max(1, shape[j] // 2)
        shapes.append(tuple(shape))
    return shapes


def loop_time(b: Bench, step: Callable[[], Any], steps: int, rounds: int, warmup: int) -> float:
    """Median seconds per step over rounds of ``steps`` back-to-back steps and one sync: a
    host-bound step (many small tensors) is timed as a training loop runs it, launches and
    Python included, which CUDA events around one step would not show."""
    for _ in range(warmup):
        step()
    b.sync()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        b.sync()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def bench_adam_small(b: Bench) -> None:
    import varstore as tf
    say("\n[adam, many small tensors]")
    shapes = small_shapes(b.args.small_tensors, b.args.small_max_elems)
    sizes = [int(np.prod(s)) for s in shapes]
    n = sum(sizes)
    params = [b.random(k, seed=1000 + i).reshape(s) for i, (k, s) in enumerate(zip(sizes, shapes))]
    grads = [b.random(k, seed=2000 + i, scale=0.1).reshape(s) for i, (k, s) in enumerate(zip(sizes, shapes))]
    # torch's copies are taken before varstore's steps change the values (the variables adopt
    # `params` itself).
    start = [(p.copy(), g.copy()) for p, g in zip(params, grads)]
    lr, b1, b2, eps = 1e-4, 0.9, 0.999, 1e-8
    # 10 x 10 steps on a card; one of each in the dry run, where torch's CPU step is slow.
    steps = rounds = max(1, b.args.repeats // 3)
    label = f"{len(shapes)} tensors, {n / 1e6:.2f} M elems, {min(sizes)}..{max(sizes)} each"
    g = tf.Graph()
    with g.as_default():
        with tf.device("/gpu:0"):
            tvars = [tf.Variable(tf.zeros(list(s)), name=f"small{i}") for i, s in enumerate(shapes)]
        tf.global_variables_initializer().run()
        for tv, p in zip(tvars, params):
            tv.load(p)
        opt = tf.train.AdamOptimizer(lr, beta1=b1, beta2=b2, epsilon=eps)
        if b.fake:
            _route_fake_kernels(b)
        # warm-up: the first step makes the chunk table, which later steps reuse.
        t_vs = {}
        for mode, step in public_adam_steps(tf, g, opt, tvars, grads).items():
            t_vs[mode] = loop_time(b, step, steps, rounds, max(1, b.args.warmup))
            b.metric(f"varstore Adam step, {mode} mode ({label})", t_vs[mode] * 1e3, "ms", note=MODE_LABEL[mode])
        del tvars, opt, step
    del g, params, grads

    try:
        import torch
    except Exception as e:  # noqa: BLE001
        b.metric("torch fused Adam, small tensors", float("nan"), "ms", note=f"skipped: torch unavailable: {e}")
        return
    if not b.fake and not torch.cuda.is_available():
        b.metric("torch fused Adam, small tensors", float("nan"), "ms", note="skipped: torch has no CUDA")
        return
    # The dry run's device arrays are host memory, so torch runs there on the CPU: that proves
    # the DLPack sharing and the timing code, not a comparison.
    tparams = []
    for p, gr in start:
        tp = torch.from_dlpack(p).requires_grad_(True)
        tp.grad = torch.from_dlpack(gr)
        tparams.append(tp)
    assert tparams[0].device.type == ("cpu" if b.fake else "cuda")
    topt = torch.optim.Adam(tparams, lr=lr, betas=(b1, b2), eps=eps, fused=True)
    t_torch = loop_time(b, topt.step, steps, rounds, max(1, b.args.warmup))
    b.metric("torch.optim.Adam(fused=True) step, same tensors", t_torch * 1e3, "ms",
             note="torch on the CPU (dry run)" if b.fake else "")
    for mode, t in t_vs.items():
        ratio = t / t_torch
        b.metric(f"varstore {mode} / torch fused Adam time, small tensors", ratio, "x",
                 f"<= {TARGETS['adam_vs_torch']}", ratio <= TARGETS["adam_vs_torch"], note=MODE_LABEL[mode])
    del tparams, topt, start


def scratch_dir(b: Bench, need: int) -> tuple[str, str]:
    if b.args.scratch:
        return tempfile.mkdtemp(prefix="varstore-bench-", dir=b.args.scratch), b.args.scratch
    if os.path.isdir("/dev/shm"):
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize >= need + GiB:
            return tempfile.mkdtemp(prefix="varstore-bench-", dir="/dev/shm"), "/dev/shm"
    d = tempfile.mkdtemp(prefix="varstore-bench-")
    return d, f"{d} (disk: /dev/shm lacks room)"


def bench_gather(b: Bench) -> None:
    import devices
    from varstore.checkpoint import write_checkpoint
    say("\n[gather]")
    n = b.args.gather_mib * MiB
    arr = b.random(n // 4, seed=7)
    d2h = b.info.get("d2h_pinned_bytes_per_s")

    def consume():
        for _chunk in devices.host_chunks(arr):
            pass
    t = b.wall_time(consume, repeats=b.args.io_repeats)
    tput = n / t
    if d2h:
        b.metric("gather: host_chunks vs pinned d2h", tput / d2h, "x", f">= {TARGETS['gather_fraction']}",
                 tput / d2h >= TARGETS["gather_fraction"], f"{tput / 1e9:.1f} GB/s")
    else:
        b.metric("gather: host_chunks", tput / 1e9, "GB/s")

    d, where = scratch_dir(b, 2 * n)
    b.info["scratch"] = where
    path = os.path.join(d, "gather.ckpt")
    try:
        def save():
            write_checkpoint(path, [("x", arr)], fsync=False)

        def clean():
            if os.path.exists(path):
                os.unlink(path)
        t = b.wall_time(save, repeats=b.args.io_repeats, between=clean)
        tput = n / t
        if d2h:
            b.metric("write_checkpoint(GPU array) to RAM vs pinned d2h", tput / d2h, "x",
                     f">= {TARGETS['gather_fraction']}", tput / d2h >= TARGETS["gather_fraction"],
                     f"{tput / 1e9:.1f} GB/s to {where}")
        host = arr.get()  # the host-side cost alone (checksum + write), for comparison
        t_host = b.wall_time(lambda: write_checkpoint(path, [("x", host)], fsync=False),
                             repeats=b.args.io_repeats, between=clean)
        b.metric("write_checkpoint(host array) to RAM", n / t_host / 1e9, "GB/s",
                 note="the ceiling the host side sets")
        del host
    finally:
        shutil.rmtree(d, ignore_errors=True)
    del arr


def bench_async_save(b: Bench) -> None:
    import varstore as tf
    say("\n[step latency during an async save]")
    total = int(b.args.async_gib * GiB)
    k = max(1, b.args.async_vars)
    per = (total // k) // 4096 * 1024  # float32 elements per variable, whole KiB
    nbytes = per * 4 * k
    d, where = scratch_dir(b, 2 * nbytes)
    try:
        g = tf.Graph()
        with g.as_default():
            with tf.device("/gpu:0"):
                tvars = [tf.Variable(tf.random_normal([per], seed=i + 1), name=f"async{i}/w") for i in range(k)]
            tf.global_variables_initializer().run()
            grads = [b.random(per, seed=600 + i, scale=0.1) for i in range(k)]
            opt = tf.train.AdamOptimizer(1e-4)
            if b.fake:
                _route_fake_kernels(b)
            train_step = public_adam_steps(tf, g, opt, tvars, grads)["graph"]  # TF 1.x's loop
            saver = tf.train.Saver(tvars)

            def step() -> float:
                # The latency a training loop sees: the step, then its own stream drained (as
                # reading the loss would); the save's copy stream is not waited for.
                t0 = time.perf_counter()
                train_step()
                b.stream_sync()
                return time.perf_counter() - t0

            # Warm: slots, kernels and chunk table, the writer's pinned staging and the file path.
            for _ in range(max(2, b.args.warmup)):
                step()
            warm = saver.save(None, os.path.join(d, "warm.ckpt"), write_meta_graph=False)
            os.unlink(warm)
            quiet = [step() for _ in range(max(10, b.args.repeats))]
            say(f"  model: {k} GPU variables, {nbytes / GiB:.2f} GiB, checkpoints in {where}")
            during, calls, totals = [], [], []
            for r in range(max(1, b.args.async_saves)):
                b.sync()
                t0 = time.perf_counter()
                handle = saver.save(None, os.path.join(d, f"async{r}.ckpt"), write_meta_graph=False,
                                    async_save=True)
                calls.append(time.perf_counter() - t0)
                # Steps started while the save is in flight; the first one always runs, so the
                # loop is exercised even where a tiny save ends at once (dry run).
                while True:
                    during.append(step())
                    if handle.done():
                        break
                path = handle.result()
                totals.append(time.perf_counter() - t0)
                os.unlink(path)
                if len(during) >= b.args.async_min_steps:
                    break
            del tvars, grads, opt, train_step, saver
        del g
    finally:
        shutil.rmtree(d, ignore_errors=True)
        gc.collect()

    def p90(xs: list[float]) -> float:
        return float(np.percentile(xs, 90))
    q, w = statistics.median(quiet), statistics.median(during)
    b.metric(f"Adam step (graph mode), no save ({nbytes / GiB:.2f} GiB, {k} vars)", q * 1e3, "ms",
             note=f"p90 {p90(quiet) * 1e3:.2f} ms over {len(quiet)} steps; {MODE_LABEL['graph']}")
    b.metric("Adam step (graph mode) during an async save", w * 1e3, "ms",
             note=f"p90 {p90(during) * 1e3:.2f} ms, max {max(during) * 1e3:.2f} ms over {len(during)} steps "
                  f"in {len(totals)} save(s)")
    b.metric("step during async save / without (median)", w / q, "x")
    b.metric("step during async save / without (p90)", p90(during) / p90(quiet), "x")
    b.metric("async save: the save() call (snapshot)", statistics.median(calls) * 1e3, "ms",
             note="the stall the training loop sees")
    t = statistics.median(totals)
    b.metric("async save: call to durable file", t, "s", note=f"{nbytes / t / 1e9:.2f} GB/s while stepping")


@contextlib.contextmanager
def _restore_staging(b: Bench) -> Iterator[int]:
    """The chunk size restore stages through (``GpuDevice.load_into`` reads the module's
    ``DEFAULT_CHUNK_BYTES``). The dry run scales it down with its model: at 64 MiB the bound
    (2 x 128 MiB + margin) would dwarf a 48 MiB model, and a restore that copies the whole
    model to the host would pass unseen."""
    from devices.backends import gpu as gpu_backend
    if not hasattr(gpu_backend, "DEFAULT_CHUNK_BYTES"):  # a rename must not leave the bound unscaled
        raise AttributeError("devices.backends.gpu.DEFAULT_CHUNK_BYTES is gone: update _restore_staging")
    orig = gpu_backend.DEFAULT_CHUNK_BYTES
    if not b.fake:
        yield orig
        return
    gpu_backend.DEFAULT_CHUNK_BYTES = 1 * MiB
    try:
        yield gpu_backend.DEFAULT_CHUNK_BYTES
    finally:
        gpu_backend.DEFAULT_CHUNK_BYTES = orig


def bench_save_restore(b: Bench) -> None:
    import varstore as tf
    from devices.backends.base import DEFAULT_CHUNK_BYTES
    say("\n[save / restore]")
    total = int(b.args.save_gib * GiB)
    k = max(1, b.args.save_vars)
    per = (total // k) // 4096 * 1024  # float32 elements per variable, whole KiB
    nbytes = per * 4 * k
    d, where = scratch_dir(b, 2 * nbytes)
    try:
        g = tf.Graph()
        with g.as_default():
            with tf.device("/gpu:0"):
                tvars = [tf.Variable(tf.random_normal([per], seed=i + 1), name=f"layer{i}/w") for i in range(k)]
                warm = tf.Variable(tf.ones([1024]), name="warm")
            tf.global_variables_initializer().run()
            b.sync()
            saver = tf.train.Saver(tvars)
            # The pinned staging buffers exist after a first save, as in any training run.
            tf.train.Saver([warm]).save(None, os.path.join(d, "warm.ckpt"), write_meta_graph=False)
            say(f"  model: {k} GPU variables, {nbytes / GiB:.2f} GiB, checkpoints in {where}")
            times, growths, exact = [], [], True
            path = None
            for _r in range(b.args.save_repeats):
                if path and os.path.exists(path):
                    os.unlink(path)
                b.sync()
                with PeakRSS() as rss:
                    t0 = time.perf_counter()
                    path = saver.save(None, os.path.join(d, "model.ckpt"), write_meta_graph=False)
                    times.append(time.perf_counter() - t0)
                growths.append(rss.growth)
                exact = exact and rss.hwm_reset
            t = statistics.median(times)
            growth = max(growths)
            staging = 2 * DEFAULT_CHUNK_BYTES
            b.metric(f"save {nbytes / GiB:.2f} GiB GPU model: time", t, "s", note=f"{nbytes / t / 1e9:.2f} GB/s")
            b.metric("save: peak host RSS growth", growth / MiB, "MiB",
                     f"<= {TARGETS['save_rss_mib']} (+{staging // MiB} staging)",
                     growth <= TARGETS["save_rss_mib"] * MiB + staging,
                     "exact high-water mark" if exact else "sampled every 2 ms")
            # Restore into the live variables (as a resumed run does); check one came back.
            probe = tvars[0]
            want = float(probe.value()[:4096].astype(np.float64).sum())
            probe.value()[...] = 7.0
            with _restore_staging(b) as restore_chunk:
                rtimes, rgrowths, rexact = [], [], True
                for _r in range(b.args.save_repeats):
                    b.sync()
                    with PeakRSS() as rss:
                        t0 = time.perf_counter()
                        saver.restore(None, path)
                        b.sync()
                        rtimes.append(time.perf_counter() - t0)
                    rgrowths.append(rss.growth)
                    rexact = rexact and rss.hwm_reset
            got = float(probe.value()[:4096].astype(np.float64).sum())
            if got != want:
                raise AssertionError(f"restore did not bring {probe.name} back: sum {got} != {want}")
            t = statistics.median(rtimes)
            b.metric(f"restore {nbytes / GiB:.2f} GiB to the GPU: throughput", nbytes / t / 1e9, "GB/s",
                     note=f"{t:.2f} s; h2d pinned {b.info.get('h2d_pinned_bytes_per_s', float('nan')) / 1e9:.1f}"
                          f", pageable {b.info.get('h2d_pageable_bytes_per_s', float('nan')) / 1e9:.1f} GB/s")
            # The bound: restoring into existing buffers reads each chunk into a pinned buffer
            # and copies it to the card, so host memory grows by at most the staging pair
            # (2 x chunk), twice that if the pair is replaced, plus allocator noise. Any
            # host copy of a whole tensor (each is bigger than the bound) breaks it.
            staging = 2 * restore_chunk
            bound = 2 * staging + int(b.args.restore_rss_margin_mib * MiB)
            rgrowth = max(rgrowths)
            b.metric("restore: peak host RSS growth", rgrowth / MiB, "MiB",
                     f"<= {bound / MiB:.0f} (2x{staging / MiB:.0f} staging+{b.args.restore_rss_margin_mib:g})",
                     rgrowth <= bound, ("exact high-water mark" if rexact else "sampled every 2 ms")
                     + f"; {per * 4 / MiB:.0f} MiB per variable", gate=True)
            if per * 4 <= bound:
                say(f"  note: variables of {per * 4 / MiB:.0f} MiB do not exceed the {bound / MiB:.0f} MiB bound: "
                    f"a per-tensor host copy would pass it (use fewer --save-vars)")
            del tvars, warm, saver, probe
        del g
    finally:
        shutil.rmtree(d, ignore_errors=True)
        gc.collect()


SECTIONS = {"bandwidth": bench_bandwidth, "adam": bench_adam, "adam_small": bench_adam_small, "gather": bench_gather,
            "async_save": bench_async_save, "save": bench_save_restore}
assert tuple(SECTIONS) == SECTION_NAMES


def card_name(cp: Any) -> str:
    if getattr(cp, "__fakecupy__", False):
        return "none (dry run: fakecupy on the CPU)"
    try:
        name = cp.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    try:
        import cupy as cp
    except Exception as e:  # noqa: BLE001
        say(f"benchmarks/gpu.py: cupy cannot be imported ({e}); on a CPU machine use --dry-run with "
            f"PYTHONPATH=tests/fakecupy")
        return 2
    fake = bool(getattr(cp, "__fakecupy__", False))
    if args.dry_run and not fake:
        say("benchmarks/gpu.py --dry-run: cupy is the real one; put tests/fakecupy first on PYTHONPATH "
            "(scripts/gpu-check --dry-run does)")
        return 2
    if fake and not args.dry_run:
        say("benchmarks/gpu.py: cupy is the dry run's fakecupy; its figures would mean nothing (use --dry-run)")
        return 2
    from devices.backends.gpu import gpu_count
    if gpu_count() == 0:
        say("benchmarks/gpu.py: no CUDA device visible to cupy")
        return 2
    b = Bench(args, cp)
    b.info["card"] = card_name(cp)
    meta = {"card": b.info["card"], "dry_run": args.dry_run, "python": platform.python_version(),
            "numpy": np.__version__, "cupy": getattr(cp, "__version__", "?"), "args": vars(args)}
    try:
        import torch
        meta["torch"] = torch.__version__
    except Exception:  # noqa: BLE001
        meta["torch"] = None
    say(f"benchmarks/gpu.py on {meta['card']} (cupy {meta['cupy']}, torch {meta['torch']}, "
        f"numpy {meta['numpy']}, python {meta['python']}){' DRY RUN' if args.dry_run else ''}")
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        say(f"unknown sections {sorted(unknown)}; choose from {sorted(SECTIONS)}")
        return 2
    for name, fn in SECTIONS.items():
        if name not in only:
            continue
        t0 = time.perf_counter()
        try:
            fn(b)
        except KeyboardInterrupt:  # gpu-check's timeout sends SIGINT: keep what was measured
            say(f"  INTERRUPTED in {name}")
            b.errors.append({"section": name, "error": "interrupted (timeout?)"})
            break
        except Exception as e:  # noqa: BLE001 - report, go on with the next section
            say(f"  ERROR in {name}: {type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stdout)
            b.errors.append({"section": name, "error": f"{type(e).__name__}: {e}"})
        finally:
            gc.collect()
            try:
                cp.get_default_memory_pool().free_all_blocks()
            except Exception:  # noqa: BLE001
                pass
        say(f"  ({name}: {time.perf_counter() - t0:.1f} s)")
    meta["seconds"] = time.perf_counter() - t_start
    failed = [m for m in b.metrics if m.get("gate") and m.get("ok") is False]
    say(f"\nbenchmarks/gpu.py done in {meta['seconds']:.1f} s; {len(b.errors)} section error(s), "
        f"{len(failed)} bound(s) exceeded")
    for m in failed:
        say(f"  BOUND EXCEEDED: {m['name']}: {m['value']:.4g} {m['unit']}, bound {m['target']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "metrics": b.metrics, "errors": b.errors, "info": b.info}, f, indent=1,
                      default=str)
    return 1 if b.errors else (EXIT_GATE if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
