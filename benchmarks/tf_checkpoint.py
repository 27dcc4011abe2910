"""Restoring TensorFlow's own checkpoints: varstore (no TensorFlow) against TF's Saver.restore,
in one run, on the same files.

    python benchmarks/tf_checkpoint.py                     # 1 GiB: 2,000 small + 4 large tensors
    python benchmarks/tf_checkpoint.py --gib 0.25 --reps 3 # a quick run

TensorFlow runs in its own interpreter (``--tf-python``, default ``$VARSTORE_TF_PYTHON``,
else this one if it imports tensorflow), so that it can live in a separate virtualenv:

1. TF (compat.v1 graph mode) writes the checkpoint: ``--small`` float32 tensors of 64x64
   (16 KiB each) and ``--large`` float32 tensors sharing the rest of ``--gib``;
2. TF restores it ``--reps`` times into its existing variables (``Saver.restore``), with
   its default thread pools and again with one thread each (``intra/inter_op = 1``);
3. varstore restores it ``--reps`` times into existing variables (``tf.train.Saver().restore``,
   reading straight into their buffers, one thread), then reads one tensor: opening the
   bundle (its whole index parsed and validated) plus one small tensor, and one small
   tensor from a reader already open.

Files are read from the page cache (a first restore warms it; that one is not timed),
so the figures are the cost above the disk. Medians, best in brackets. Not a test.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("VARSTORE_CPU_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_TF_SIDE = r'''
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
tf1 = tf.compat.v1
cmd, prefix, shapes, reps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
with tf.Graph().as_default():
    vs = [tf1.get_variable(n, shape=s, dtype=tf.float32, initializer=tf1.zeros_initializer()) for n, s in shapes]
    saver = tf1.train.Saver()
    out = {}
    for threads in ([0, 1] if cmd == "restore" else [0]):
        cfg = tf1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
        with tf1.Session(config=cfg) as sess:
            sess.run(tf1.global_variables_initializer())
            if cmd == "write":
                rng = np.random.default_rng(0)
                for v, (_, s) in zip(vs, shapes):
                    v.load(rng.standard_normal(s, dtype=np.float32), sess)
                saver.save(sess, prefix, write_meta_graph=False, write_state=False)
                break
            saver.restore(sess, prefix)  # warm the page cache and the graph
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                saver.restore(sess, prefix)
                times.append(time.perf_counter() - t0)
            out["default" if threads == 0 else "1"] = times
    print(json.dumps(out))
'''


def _tf_python(arg: str | None) -> str | None:
    if arg:
        return arg
    if os.environ.get("VARSTORE_TF_PYTHON"):
        return os.environ["VARSTORE_TF_PYTHON"]
    return sys.executable if importlib.util.find_spec("tensorflow") else None


def _tf(py: str, *args: str) -> dict:
    r = subprocess.run([py, "-c", _TF_SIDE, *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"TensorFlow side failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1] or "{}")


def _fmt(ts: list[float], unit: float = 1.0, suffix: str = "s") -> str:
    return f"{statistics.median(ts) * unit:.3f} {suffix} [{min(ts) * unit:.3f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--large", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tf-python", default=None)
    ap.add_argument("--dir", default=None, help="where the checkpoint is written (default: a temporary dir)")
    args = ap.parse_args(argv)
    py = _tf_python(args.tf_python)
    if py is None:
        raise SystemExit("needs TensorFlow to write the checkpoint: --tf-python or VARSTORE_TF_PYTHON")
    small = [(f"small/{i:04d}", [64, 64]) for i in range(args.small)]
    rest = int(args.gib * (1 << 30)) - args.small * 64 * 64 * 4
    rows = max(1, rest // (args.large * 4 * 4096))
    large = [(f"large/{i}", [rows, 4096]) for i in range(args.large)]
    shapes = small + large
    total = sum(4 * a * b for _, (a, b) in shapes)
    d = args.dir or tempfile.mkdtemp(prefix="varstore-tfbench-")
    prefix = os.path.join(d, "model.ckpt")
    t0 = time.perf_counter()
    _tf(py, "write", prefix, json.dumps(shapes), "0")
    print(f"checkpoint: {len(small)} small (64x64 float32) + {len(large)} large ({rows}x4096 float32) tensors, "
          f"{total / (1 << 30):.3f} GiB, written by TF in {time.perf_counter() - t0:.1f} s")
    tf_times = _tf(py, "restore", prefix, json.dumps(shapes), str(args.reps))

    import numpy as np

    import varstore as vs
    from varstore.checkpoint.tf import CRC32C_IMPLEMENTATION, TFBundleReader
    vs.reset_default_graph()
    variables = [vs.Variable(vs.zeros(s, "float32"), name=n) for n, s in shapes]
    saver = vs.train.Saver()
    ours = []
    with vs.Session() as sess:
        sess.run(vs.global_variables_initializer())
        saver.restore(sess, prefix)  # warm, as TF's first restore
        for _ in range(args.reps):
            t0 = time.perf_counter()
            saver.restore(sess, prefix)
            ours.append(time.perf_counter() - t0)
        check = variables[-1].storage.array
        assert np.isfinite(check).all()
    opens, reads = [], []
    for _ in range(max(args.reps, 5)):
        t0 = time.perf_counter()
        with TFBundleReader(prefix) as r:
            r.read_tensor("small/1234" if args.small > 1234 else small[-1][0])
            opens.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r.read_tensor(small[0][0])
            reads.append(time.perf_counter() - t0)
    gib = total / (1 << 30)
    print(f"crc32c: {CRC32C_IMPLEMENTATION}; one varstore thread; TF default pools (this machine: "
          f"{os.cpu_count()} cores) and 1 thread")
    print(f"restore into existing variables, {args.reps} reps, median [best]:")
    for label, ts in (("TF Saver.restore (default threads)", tf_times["default"]),
                      ("TF Saver.restore (1 thread)", tf_times["1"]), ("varstore Saver.restore", ours)):
        print(f"  {label:38s} {_fmt(ts)}   {gib / statistics.median(ts):.2f} GiB/s")
    ratio = statistics.median(ours) / statistics.median(tf_times["default"])
    print(f"  varstore / TF (default threads): {ratio:.2f}x")
    print(f"one tensor: open + index + read one 16 KiB tensor {_fmt(opens, 1e3, 'ms')}; "
          f"read one from an open reader {_fmt(reads, 1e3, 'ms')}")
    if args.dir is None:
        import shutil
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
