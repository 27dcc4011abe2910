"""Per-variable costs at the scale of real models: varstore's public API against TF 1.x's
own Saver, torch and safetensors, in one run.

    python benchmarks/many_variables.py                       # 1,000 / 16,000 / 100,000 variables
    python benchmarks/many_variables.py --counts 1000 --reps 3 --skip-adam   # a quick run

Run it with an interpreter that has varstore and, for the comparison columns,
``tensorflow-cpu``, ``torch`` and ``safetensors`` (each column is skipped when its
package is missing). TF runs in compat.v1 graph mode, as TF 1.x code does, its session with
TF's default pools (``--tf-threads N`` sizes them; with 1, TF's restore of 16,000 variables
took ~14x longer, so the defaults are the baseline a user meets; they used ~1.2 cores).

Cases, each timed as the median of ``--reps`` (the best in brackets, then the median CPU
time of the process, all threads):

- tiny variables: ``--counts`` variables of 16 float32 each:
  - ``save``: ``Saver.save(sess, path, write_meta_graph=False)`` (varstore fsyncs the
    file and the directory; TF, torch and safetensors do not, so their column is the
    cost without durability);
  - ``save+meta``: the same with the meta graph (TF's default);
  - ``restore``: ``Saver.restore`` into the existing variables (torch: ``torch.load`` and
    ``copy_`` into the existing tensors; safetensors: ``load_file`` and ``np.copyto``);
  - ``open+1``: open the checkpoint and read one tensor (``tf.train.load_variable``;
    TF: ``tf.train.load_checkpoint(p).get_tensor``; torch: ``torch.load(mmap=True)``;
    safetensors: ``safe_open(...).get_tensor``);
- a transformer-like set: ``--layers`` blocks of width ``--width`` (385 weight tensors of
  mixed shapes by default) with their two Adam slots each: the same four operations;
- an Adam step (``AdamOptimizer.apply_gradients``) over 2,000 variables of 256 float32
  and over the transformer set, against ``torch.optim.Adam(fused=True)`` and
  ``foreach=True``, everything on 1 thread (``VARSTORE_CPU_THREADS=1``,
  ``torch.set_num_threads(1)``).

Peak RSS growth of the whole process is printed at the end. Benchmarks are not tests:
nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("VARSTORE_CPU_THREADS", "1")  # equal thread counts (DESIGN.md)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gc  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import varstore as vs  # noqa: E402


def optional(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


def timed(fn, reps: int, between=None) -> tuple[float, float, float]:
    """(median, best, median CPU) seconds of ``fn()`` over ``reps`` runs, after one untimed
    warm-up run (first-use costs: imports, graph functions, page cache); ``between()`` runs
    untimed before each. CPU is this process's user+sys time, all threads (TF's pools
    included): the steadiest figure on a shared machine."""
    fn()
    ts, cs = [], []
    for _ in range(reps):
        if between is not None:
            between()
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    return statistics.median(ts), min(ts), statistics.median(cs)


# -- the candidates -------------------------------------------------------------------------
def bench_varstore(arrays: dict, d: str, reps: int) -> dict:
    vs.reset_default_graph()
    variables = {k: vs.Variable(a, name=k) for k, a in arrays.items()}
    sess = vs.Session()
    sess.run(vs.global_variables_initializer())
    saver = vs.train.Saver(max_to_keep=None)
    p = os.path.join(d, "vs.ckpt")
    out = {"save": timed(lambda: saver.save(sess, p, write_meta_graph=False), reps),
           "save+meta": timed(lambda: saver.save(sess, p), reps),
           "restore": timed(lambda: saver.restore(sess, p), reps)}
    one = next(iter(arrays))
    out["open+1"] = timed(lambda: vs.train.load_variable(p, one), reps)
    del variables
    return out


def bench_tf(tf, arrays: dict, d: str, reps: int, tf_threads: int = 0) -> dict:
    g = tf.Graph()
    with g.as_default():
        variables = [tf.compat.v1.Variable(a, name=k) for k, a in arrays.items()]
        saver = tf.compat.v1.train.Saver(max_to_keep=None)
        init = tf.compat.v1.global_variables_initializer()
    config = None
    if tf_threads:  # TF's defaults size its pools to every core
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=tf_threads,
                                          inter_op_parallelism_threads=tf_threads)
    sess = tf.compat.v1.Session(graph=g, config=config)
    sess.run(init)
    p = os.path.join(d, "tf.ckpt")
    out = {"save": timed(lambda: saver.save(sess, p, write_meta_graph=False), reps),
           "save+meta": timed(lambda: saver.save(sess, p), reps),
           "restore": timed(lambda: saver.restore(sess, p), reps)}
    one = next(iter(arrays))
    out["open+1"] = timed(lambda: tf.train.load_checkpoint(p).get_tensor(one), reps)
    sess.close()
    del variables
    return out


def bench_torch(torch, arrays: dict, d: str, reps: int) -> dict:
    state = {k: torch.from_numpy(a.copy()) for k, a in arrays.items()}
    p = os.path.join(d, "model.pt")

    def restore():
        loaded = torch.load(p, weights_only=True)
        for k, t in state.items():
            t.copy_(loaded[k])

    out = {"save": timed(lambda: torch.save(state, p), reps), "restore": timed(restore, reps)}
    one = next(iter(arrays))
    out["open+1"] = timed(lambda: torch.load(p, mmap=True, weights_only=True)[one].clone(), reps)
    return out


def bench_safetensors(st, arrays: dict, d: str, reps: int) -> dict:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
    state = {k: a.copy() for k, a in arrays.items()}
    p = os.path.join(d, "model.safetensors")

    def restore():
        loaded = load_file(p)
        for k, a in state.items():
            np.copyto(a, loaded[k])

    def one_tensor():
        with safe_open(p, "np") as f:
            return f.get_tensor(next(iter(arrays)))

    return {"save": timed(lambda: save_file(state, p), reps), "restore": timed(restore, reps),
            "open+1": timed(one_tensor, reps)}


# -- data ----------------------------------------------------------------------------------------
def tiny(n: int) -> dict:
    return {f"block{i // 100}/layer{i % 100}/v": np.full(16, i % 1000, np.float32) for i in range(n)}


def transformer(layers: int, width: int, seed: int = 0) -> dict:
    """About 33 tensors per block (attention, MLP, norms, biases), each with two Adam slots."""
    rng = np.random.default_rng(seed)
    w = width
    shapes = {"embed/kernel": (4 * w, w)}
    for i in range(layers):
        b = f"layer{i:02d}"
        for m in ("q", "k", "v", "o"):
            shapes[f"{b}/attn/{m}/kernel"] = (w, w)
            shapes[f"{b}/attn/{m}/bias"] = (w,)
        shapes[f"{b}/mlp/up/kernel"] = (w, 4 * w)
        shapes[f"{b}/mlp/up/bias"] = (4 * w,)
        shapes[f"{b}/mlp/down/kernel"] = (4 * w, w)
        shapes[f"{b}/mlp/down/bias"] = (w,)
        for ln in ("ln1", "ln2"):
            shapes[f"{b}/{ln}/gamma"] = (w,)
            shapes[f"{b}/{ln}/beta"] = (w,)
    out = {}
    for k, s in shapes.items():
        out[k] = rng.standard_normal(s).astype(np.float32)
        out[f"{k}/Adam"] = np.zeros(s, np.float32)
        out[f"{k}/Adam_1"] = np.zeros(s, np.float32)
    return out


# -- Adam --------------------------------------------------------------------------------------------
def bench_adam(params: list, reps: int, torch) -> dict:
    out = {}
    vs.reset_default_graph()
    variables = [vs.Variable(a.copy(), name=f"p{i}") for i, a in enumerate(params)]
    # Graph mode, as a TF 1.x loop: the train op built once over a placeholder per gradient,
    # one sess.run per step with the gradients fed.
    opt = vs.train.AdamOptimizer(1e-3)
    phs = [vs.placeholder(vs.float32, a.shape) for a in params]
    train = opt.apply_gradients(list(zip(phs, variables)))
    sess = vs.Session()
    sess.run(vs.global_variables_initializer())
    feed = {ph: np.full_like(a, 1e-3) for ph, a in zip(phs, params)}
    sess.run(train, feed_dict=feed)  # the first step compiles and caches: what training repeats is after it
    out["varstore graph"] = timed(lambda: sess.run(train, feed_dict=feed), reps)
    # Eager mode, as a numpy/torch loop: apply_gradients applies the step when called.
    with vs.eager_mode():
        grads = [(g, v) for g, v in zip(feed.values(), variables)]
        opt.apply_gradients(grads)
        out["varstore eager"] = timed(lambda: opt.apply_gradients(grads), reps)
    if torch is not None:
        torch.set_num_threads(1)
        for kind in ("fused", "foreach"):
            ps = [torch.from_numpy(a.copy()).requires_grad_() for a in params]
            for p in ps:
                p.grad = torch.full_like(p, 1e-3)
            o = torch.optim.Adam(ps, lr=1e-3, **{kind: True})
            o.step()
            out[f"torch {kind}"] = timed(o.step, reps)
    return out


# -- report --------------------------------------------------------------------------------------------
def fmt(t: tuple[float, float, float] | None) -> str:
    return "-" if t is None else f"{t[0] * 1e3:.1f} ({t[1] * 1e3:.1f}) {t[2] * 1e3:.1f}"


def ratios(ours, theirs) -> str:
    """Median, best and CPU ratios."""
    if not ours or not theirs:
        return "-"
    return " / ".join(f"{a / b:.2f}x" for a, b in zip(ours, theirs))


def table(title: str, results: dict, ops: list[str], base: str = "TF Saver") -> None:
    print(f"\n{title}")
    cols = list(results)
    print(f"  {'op':10}" + "".join(f"{c:>26}" for c in cols) + f"   {'varstore / ' + base + ' (median / best / CPU)':>40}")
    for op in ops:
        row = [results[c].get(op) for c in cols]
        ours, theirs = results.get("varstore", {}).get(op), results.get(base, {}).get(op)
        print(f"  {op:10}" + "".join(f"{fmt(t):>26}" for t in row) + f"   {ratios(ours, theirs):>40}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="1000,16000,100000")
    ap.add_argument("--tf-max", type=int, default=16000,
                    help="largest count TF builds (graph construction of 100,000 variables takes minutes)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tf-threads", type=int, default=0,
                    help="TF session's intra/inter-op pool sizes (0: TF's defaults, every core; 1 makes "
                         "TF's restore of 16,000 variables ~14x slower, not a fair baseline)")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--skip-adam", action="store_true")
    ap.add_argument("--skip", action="append", default=[], choices=["tensorflow", "torch", "safetensors"],
                    help="leave a comparison column out (a shorter run)")
    args = ap.parse_args(argv)
    tf, torch, st = (None if m in args.skip else optional(m) for m in ("tensorflow", "torch", "safetensors"))
    if tf is not None:
        tf.compat.v1.disable_eager_execution()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, TF {getattr(tf, '__version__', '-')}, "
          f"torch {getattr(torch, '__version__', '-')}, 1 thread; ms: median (best) CPU, of {args.reps}")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    sets = [(f"{n:,} variables of 16 float32", tiny(n), n <= args.tf_max) for n in map(int, args.counts.split(","))]
    t = transformer(args.layers, args.width)
    mib = sum(a.nbytes for a in t.values()) / (1 << 20)
    sets.append((f"transformer-like: {len(t) // 3} weights + Adam slots = {len(t)} tensors, {mib:.0f} MiB", t, True))
    for title, arrays, with_tf in sets:
        d = tempfile.mkdtemp(prefix="vs-many-")
        try:
            results = {"varstore": bench_varstore(arrays, d, args.reps)}
            if tf is not None and with_tf:
                results["TF Saver"] = bench_tf(tf, arrays, d, args.reps, args.tf_threads)
            if torch is not None:
                results["torch.save"] = bench_torch(torch, arrays, d, args.reps)
            if st is not None:
                results["safetensors"] = bench_safetensors(st, arrays, d, args.reps)
            table(title, results, ["save", "save+meta", "restore", "open+1"],
                  base="TF Saver" if "TF Saver" in results else "torch.save")
        finally:
            shutil.rmtree(d, ignore_errors=True)

    if not args.skip_adam:
        rng = np.random.default_rng(1)
        small = [rng.standard_normal(256).astype(np.float32) for _ in range(2000)]
        big = [a for k, a in t.items() if not k.endswith(("/Adam", "/Adam_1"))]
        for title, params in (("Adam step, 2,000 x 256 float32", small),
                              (f"Adam step, transformer-like ({len(big)} tensors)", big)):
            res = bench_adam(params, args.reps * 4, torch)
            print(f"\n{title}")
            for k, v in res.items():
                if k.startswith("varstore"):
                    print(f"  {k:16}{fmt(v):>26}")
                    continue
                print(f"  {k:16}{fmt(v):>26}   " + "   ".join(
                    f"{ours} / {k} = {ratios(res[ours], v)}" for ours in ("varstore graph", "varstore eager")))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\npeak RSS {peak / 1024:.0f} MiB (+{(peak - rss0) / 1024:.0f} MiB during the run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
