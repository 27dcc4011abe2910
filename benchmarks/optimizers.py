"""Optimizer update throughput on the CPU: varstore's fused kernels against what a user
would pick instead.

    python benchmarks/optimizers.py                  # 1 GiB of float32 parameters
    python benchmarks/optimizers.py --size-mib 64    # a quick run

For SGD, Momentum and Adam, one step over every parameter, in two mixes of
tensors holding the same bytes:

- ``64``: 64 equal tensors;
- ``2004``: 4 large tensors (half the bytes) and 2000 small ones (the other
  half, sizes log-uniform over a 256x range), the shape of a real model.

Candidates, interleaved round by round (median of ``--reps``):

- ``varstore``: ``kernels.apply_dense`` per tensor (the public path, argument
  checks included), at 1 thread and at ``--threads``;
- ``varstore many``: ``kernels.apply_dense_many`` over all tensors at once (what
  ``apply_gradients`` runs on a CPU: one compiled call, its operand table kept
  between steps), at the same thread counts;
- ``varstore graph`` / ``varstore eager``: the public API, a whole optimizer step
  (``GradientDescentOptimizer`` / ``MomentumOptimizer`` / ``AdamOptimizer`` over
  Variables holding the same memory), at 1 thread and at ``--threads``.
  ``graph``: TF 1.x's loop, the train op built once over one placeholder per
  gradient and ``sess.run(train, feed_dict=...)`` each step (what a TF 1.x user
  runs); ``eager``: ``opt.apply_gradients(pairs)`` under ``tf.eager_mode()`` each
  step (what a numpy/torch loop runs). Adam's bias correction comes from its beta
  power variables there, so its numbers differ; the time is what is compared;
- ``torch fused`` / ``torch foreach``: ``torch.optim`` with ``fused=True`` /
  ``foreach=True`` at the same thread counts (``torch.set_num_threads``),
  parameters sharing the same memory;
- ``numpy``: the best plain numpy I could write: in-place ufuncs with
  ``out=``, cache-blocked so temporaries stay in L2 (one thread: numpy's
  elementwise ops do not use threads);
- ``floor``: bytes the update must move (SGD 12 B/element: read var and
  grad, write var; Momentum 20; Adam 28) over the copy bandwidth measured
  with ``np.copyto`` on a large array, at 1 and ``--threads`` threads.
  A copy streams slower than a fused update (its destination lines are
  write-allocated; an update writes lines it has just read), so the fused
  kernels run *below* this "floor": read it as a scale, not a bound.

Arrays are 64-byte aligned, as ``devices`` allocates variables. On a shared
machine, compare the "best ms" column too: other processes only add time. Ratios are
against torch fused at the same thread count; "per byte vs 64-mix" compares
the 2004-tensor mix's time with the 64-tensor mix's (same bytes).
Benchmarks are not tests: nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import devices  # noqa: E402
from devices.backends.cpu import aligned_empty  # noqa: E402
from varstore.train import kernels  # noqa: E402

BYTES_PER_ELEM = {"sgd": 12, "momentum": 20, "adam": 28}
LR, MOM, B1, B2, EPS = 1e-3, 0.9, 0.9, 0.999, 1e-8
BLOCK = 1 << 15  # numpy baseline block (elements): 128 KiB temporaries, L2-resident


def sizes_for(mix: str, total_elems: int, rng: np.random.Generator) -> list[int]:
    """Element counts of the tensors of a mix, summing to about ``total_elems``."""
    if mix == "64":
        return [total_elems // 64] * 64
    large = [total_elems // 8] * 4  # half the bytes in 4 tensors
    w = np.exp(rng.uniform(np.log(1.0), np.log(256.0), 2000))
    small = np.maximum(1, (w / w.sum() * (total_elems - sum(large))).astype(np.int64))
    return large + [int(s) for s in small]


def filled(n: int, rng: np.random.Generator, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    a = aligned_empty((n,), np.float32)
    a[:] = rng.uniform(lo, hi, n).astype(np.float32)  # touches every page now, not in the first timing
    return a


def copy_bandwidth(nbytes: int, threads: int) -> float:
    """Bytes moved per second (read + write) by np.copyto of a large array over ``threads``."""
    n = max(1 << 20, nbytes // 4)
    src, dst = np.ones(n, np.float32), np.zeros(n, np.float32)
    step = -(-n // threads)
    parts = [(lo, min(n, lo + step)) for lo in range(0, n, step)]
    pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def once():
        if pool is None:
            np.copyto(dst, src)
        else:  # numpy releases the GIL for big copies
            list(pool.map(lambda p: np.copyto(dst[p[0]:p[1]], src[p[0]:p[1]]), parts))

    once()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    if pool is not None:
        pool.shutdown()
    return 2 * src.nbytes / statistics.median(times)


# -- numpy baseline: in place, blocked -----------------------------------------------------------

def numpy_step(rule: str, params, grads, slots, scratch, lr_t: float) -> None:
    for k, (p, g) in enumerate(zip(params, grads)):
        s = slots[k]
        for lo in range(0, p.size, BLOCK):
            hi = min(p.size, lo + BLOCK)
            pv, gv, t = p[lo:hi], g[lo:hi], scratch[:hi - lo]
            if rule == "sgd":
                np.multiply(gv, np.float32(LR), out=t)
                pv -= t
            elif rule == "momentum":
                acc = s[0][lo:hi]
                acc *= np.float32(MOM)
                acc += gv
                np.multiply(acc, np.float32(LR), out=t)
                pv -= t
            else:
                m, v = s[0][lo:hi], s[1][lo:hi]
                m *= np.float32(B1)
                np.multiply(gv, np.float32(1 - B1), out=t)
                m += t
                v *= np.float32(B2)
                np.multiply(gv, gv, out=t)
                t *= np.float32(1 - B2)
                v += t
                np.sqrt(v, out=t)
                t += np.float32(EPS)
                np.divide(m, t, out=t)
                t *= np.float32(lr_t)
                pv -= t


# -- the run -------------------------------------------------------------------------------------

def bench_rule(rule: str, mix: str, total_elems: int, threads: int, reps: int, torch,
               only: list[str] | None = None) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(0)
    sizes = sizes_for(mix, total_elems, rng)
    params = [filled(n, rng) for n in sizes]
    grads = [filled(n, rng) for n in sizes]
    nslots = {"sgd": 0, "momentum": 1, "adam": 2}[rule]
    slots = [[filled(n, rng, 0.0, 0.0) for _ in range(nslots)] for n in sizes]
    keys = kernels.RULES[rule]
    slot_dicts = [dict(zip(keys, s)) for s in slots]
    scratch = aligned_empty((BLOCK,), np.float32)
    cpu0 = devices.get_device("/cpu:0")
    step = [0]

    def hyper():
        step[0] += 1
        if rule == "sgd":
            return {"lr": LR}
        if rule == "momentum":
            return {"lr": LR, "momentum": MOM}
        t = step[0]
        return {"lr": LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t), "beta1": B1, "beta2": B2, "epsilon": EPS}

    def ours(n_threads):
        def run():
            kernels.set_threads(n_threads)
            h = hyper()
            for p, g, s in zip(params, grads, slot_dicts):
                kernels.apply_dense(rule, cpu0, p, g, s, **h)
        return run

    slot_lists = {k: [s[j] for s in slots] for j, k in enumerate(keys)}
    cache: dict = {}  # the operand table, kept across steps as an optimizer keeps it

    def many(n_threads):
        def run():
            kernels.set_threads(n_threads)
            kernels.apply_dense_many(rule, cpu0, params, grads, slot_lists, hyper(), cache)
        return run

    candidates = {"varstore 1t": ours(1), "varstore many 1t": many(1)}
    if threads > 1:
        candidates[f"varstore {threads}t"] = ours(threads)
        candidates[f"varstore many {threads}t"] = many(threads)

    for mode, run in public_api_steps(rule, sizes, params, grads, slots).items():
        for t in sorted({1, threads}):
            candidates[f"varstore {mode} {t}t"] = (lambda run=run, t=t: (kernels.set_threads(t), run()))

    def numpy_run():
        h = hyper()
        numpy_step(rule, params, grads, slots, scratch, h["lr"])
    candidates["numpy in-place"] = numpy_run

    if torch is not None:
        tparams = [torch.nn.Parameter(torch.from_numpy(p)) for p in params]  # same memory as params
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g)

        def torch_cand(kind, n_threads):
            kw = {kind: True}
            if rule == "adam":
                opt = torch.optim.Adam(tparams, lr=LR, betas=(B1, B2), eps=EPS, **kw)
            else:
                opt = torch.optim.SGD(tparams, lr=LR, momentum=MOM if rule == "momentum" else 0.0, **kw)

            def run():
                torch.set_num_threads(n_threads)
                with torch.no_grad():
                    opt.step()
            return run, opt

        for kind in ("fused", "foreach"):
            for t in sorted({1, threads}):
                run, _opt = torch_cand(kind, t)
                run()  # creates torch's state (exp_avg, ...) outside the timing
                candidates[f"torch {kind} {t}t"] = run

    if only:
        candidates = {k: v for k, v in candidates.items() if any(o in k for o in only)}
    for run in candidates.values():  # warm up: compile, page in
        run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(reps):
        for name, run in candidates.items():
            gc.collect()
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    kernels.set_threads(None)
    return {name: (statistics.median(ts), min(ts)) for name, ts in times.items()}


def public_api_steps(rule: str, sizes: list[int], params, grads, slots) -> dict:
    """One step through the public API, as a function, per mode ("graph", "eager"): an
    optimizer over Variables that hold ``params`` (their slots hold ``slots``: no new memory)."""
    import varstore as tf  # noqa: PLC0415
    tf.reset_default_graph()
    vs = [tf.Variable(tf.zeros([n]), name=f"p{k}") for k, n in enumerate(sizes)]
    for v, p in zip(vs, params):
        v.storage.adopt(p)  # the same memory as every other candidate's parameters
    opt = {"sgd": lambda: tf.train.GradientDescentOptimizer(LR),
           "momentum": lambda: tf.train.MomentumOptimizer(LR, MOM),
           "adam": lambda: tf.train.AdamOptimizer(LR, B1, B2, EPS)}[rule]()
    phs = [tf.placeholder(tf.float32, [n], name=f"g{k}") for k, n in enumerate(sizes)]
    train = opt.apply_gradients(zip(phs, vs))  # TF 1.x: built once (its slots too)
    for v, s in zip(vs, slots):
        for name, arr in zip(kernels.RULES[rule], s):
            opt.get_slot(v, name).storage.adopt(arr)
    sess = tf.Session()
    sess.run(tf.variables_initializer([v for v in opt.variables() if not v.is_initialized]))  # beta powers
    feed = dict(zip(phs, grads))
    pairs = list(zip(grads, vs))

    def graph():
        sess.run(train, feed_dict=feed)

    def eager():
        with tf.eager_mode():
            opt.apply_gradients(pairs)

    return {"graph": graph, "eager": eager}


def call_overhead(torch) -> dict[str, float]:
    """Microseconds per call on a (64,) float32 tensor: the fixed cost a small tensor pays."""
    import timeit
    cpu0 = devices.get_device("/cpu:0")
    out = {}
    for rule in ("sgd", "momentum", "adam"):
        p, g = filled(64, np.random.default_rng(0)), filled(64, np.random.default_rng(1))
        s = {k: aligned_empty((64,), np.float32) for k in kernels.RULES[rule]}
        for a in s.values():
            a[:] = 0.5
        h = {"sgd": {"lr": LR}, "momentum": {"lr": LR, "momentum": MOM},
             "adam": {"lr": LR, "beta1": B1, "beta2": B2, "epsilon": EPS}}[rule]
        kernels.apply_dense(rule, cpu0, p, g, s, **h)
        n = 20000
        best = min(timeit.repeat(lambda rule=rule, p=p, g=g, s=s, h=h: kernels.apply_dense(rule, cpu0, p, g, s, **h),
                                 number=n, repeat=7))
        out[f"varstore {rule}"] = best / n * 1e6
        if torch is not None:
            tp = torch.nn.Parameter(torch.from_numpy(p))
            tp.grad = torch.from_numpy(g)
            opt = (torch.optim.Adam([tp], lr=LR, fused=True) if rule == "adam" else
                   torch.optim.SGD([tp], lr=LR, momentum=MOM if rule == "momentum" else 0.0, fused=True))
            torch.set_num_threads(1)
            opt.step()
            best = min(timeit.repeat(opt.step, number=n // 4, repeat=7))
            out[f"torch fused {rule}"] = best / (n // 4) * 1e6
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="float32 parameter bytes (default 1024)")
    ap.add_argument("--reps", type=int, default=5, help="timed rounds, median reported (default 5)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="the multi-threaded count (default: CPUs available)")
    ap.add_argument("--rules", default="sgd,momentum,adam")
    ap.add_argument("--mixes", default="64,2004")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only matching candidates")
    args = ap.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: PLC0415
        except ImportError:
            print("torch not installed: torch columns skipped")
    total = args.size_mib * (1 << 20) // 4
    bw1 = copy_bandwidth(min(args.size_mib, 512) << 20, 1)
    bwn = copy_bandwidth(min(args.size_mib, 512) << 20, args.threads) if args.threads > 1 else bw1
    print(f"{args.size_mib} MiB float32 parameters, median of {args.reps}, threads 1 and {args.threads}; "
          f"copy bandwidth {bw1 / 1e9:.1f} GB/s (1t), {bwn / 1e9:.1f} GB/s ({args.threads}t)")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')!s} (irrelevant: elementwise code)")
    kernels.set_threads(1)
    overhead = call_overhead(torch)
    kernels.set_threads(None)
    print("per-call cost on a (64,) float32 tensor (best of 7): "
          + ", ".join(f"{k} {v:.1f} us" for k, v in overhead.items()), flush=True)
    results = {}
    for rule in args.rules.split(","):
        for mix in args.mixes.split(","):
            r = bench_rule(rule, mix, total, args.threads, args.reps, torch,
                           args.only.split(",") if args.only else None)
            nbytes = BYTES_PER_ELEM[rule] * total
            r["floor 1t"] = (nbytes / bw1,) * 2
            if args.threads > 1:
                r[f"floor {args.threads}t"] = (nbytes / bwn,) * 2
            results[rule, mix] = r
            gc.collect()
            print(f"\n{rule}, {mix} tensors ({'median' if args.reps > 1 else 'one run'} of {args.reps}; "
                  f"ratios of medians)")
            print(f"  {'candidate':22s} {'ms':>9s} {'best ms':>9s} {'vs torch fused':>15s} "
                  f"{'per byte vs 64-mix':>19s}")
            for name, (t, best) in r.items():
                tcount = name.rsplit(" ", 1)[-1]
                ref = r.get(f"torch fused {tcount}")
                ratio = f"{t / ref[0]:.2f}x" if ref else ""
                base = results.get((rule, "64"), {}).get(name)
                per_byte = f"{t / base[0]:.2f}x" if base and mix != "64" else ""
                print(f"  {name:22s} {t * 1e3:9.1f} {best * 1e3:9.1f} {ratio:>15s} {per_byte:>19s}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
