"""Benchmark: the varstore checkpoint format against raw file I/O and the tools a user would pick instead.

    .venv/bin/python benchmarks/checkpoint_format.py --runs 7        # 1 GiB (~12 minutes)
    .venv/bin/python benchmarks/checkpoint_format.py --size-mib 32 --runs 2   # smoke run

Data: float32 random values (not zeros) in two mixes: 64 equal tensors, and
2000 small + 4 large tensors (or ``--mix 1000small+4large``). Besides ``write_checkpoint``
and ``read_into``, the same data goes through the public API: ``Saver.save`` and
``Saver.restore`` of variables holding it. Timings come from ``--runs`` interleaved runs
(each run does every operation once, in a shuffled order); the table shows
the median wall time, the fastest run and the median CPU time (user + sys of
this process: the steadiest number on a shared machine). Before each write
the old output is deleted and ``os.sync()`` runs, outside the timing. Every
writer's output is fsynced inside its timing (varstore does this itself; for
the others the benchmark opens the file and fsyncs it), reads come from the
page cache (the file was just written). Everything is single-threaded
(torch.set_num_threads(1)).

New arrays get fresh pages (the benchmark re-executes itself with glibc's
mmap threshold fixed at 128 KiB; see main()).

Peak RSS: each operation runs once more in a fresh subprocess that builds its
inputs, resets the peak (``/proc/self/clear_refs``), runs, and reports VmHWM
minus the RSS before the operation, minus the bytes the operation returns
(fresh arrays). That is the memory the method needs beyond the data itself.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _rss import reset_peak  # noqa: E402
from _rss import status_bytes as _status

from varstore.checkpoint import CheckpointReader, write_checkpoint  # noqa: E402

MIB = 1 << 20


# -- data ----------------------------------------------------------------------------
def make_shapes(mix: str, size: int) -> list[tuple[str, tuple[int, ...]]]:
    n = size // 4  # float32 elements in total
    if mix == "64x16MiB":
        return [(f"layer{i:02d}/kernel", (n // 64 // 1024, 1024)) for i in range(64)]
    k = int(mix.split("small")[0])  # "2000small+4large": ~1/32 of the bytes in k small tensors
    small = max(1, n // 32 // k)
    rest = (n - small * k) // 4
    shapes = [(f"block{i // 8}/layer{i % 8}/bias_or_norm", (small,)) for i in range(k)]
    return shapes + [(f"embedding{i}/kernel", (rest // 1024, 1024)) for i in range(4)]


def make_tensors(mix: str, size: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(name, rng.random(shape, dtype=np.float32)) for name, shape in make_shapes(mix, size)]


def empty_like_all(mix: str, size: int) -> list[tuple[str, np.ndarray]]:
    out = [(name, np.empty(shape, np.float32)) for name, shape in make_shapes(mix, size)]
    for _, a in out:
        a.fill(1.0)  # touched: "existing" buffers of variables that already live in memory
    return out


def fsync_path(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- writers ----------------------------------------------------------------------------
def w_raw(tensors, d):
    with open(d / "raw.bin", "wb", buffering=0) as f:
        for _, a in tensors:
            f.write(memoryview(a).cast("B"))
        os.fsync(f.fileno())


def w_varstore(tensors, d):
    write_checkpoint(d / "model.ckpt", tensors)


def w_varstore_nofsync(tensors, d):
    write_checkpoint(d / "nofsync.ckpt", tensors, fsync=False)


def w_safetensors(tensors, d):
    from safetensors.numpy import save_file
    save_file(dict(tensors), d / "model.safetensors")
    fsync_path(d / "model.safetensors")


def w_savez(tensors, d):
    np.savez(d / "model.npz", **dict(tensors))
    fsync_path(d / "model.npz")


def w_torch(tensors, d):
    import torch
    torch.set_num_threads(1)  # equal thread counts: every method here runs on one thread
    torch.save({k: torch.from_numpy(a) for k, a in tensors}, d / "model.pt")
    fsync_path(d / "model.pt")


def w_msgpack_numpy(tensors, d):
    import msgpack
    import msgpack_numpy
    with open(d / "model.msgpack", "wb") as f:
        f.write(msgpack.packb(dict(tensors), default=msgpack_numpy.encode))
        os.fsync(f.fileno())


# The same data through the public API: variables holding it and a Saver over them, built
# once outside the timings (Saver.save also writes the state file, fsynced, beside the file).
_SAVER: dict = {}


def saver_for(tensors):
    if "saver" not in _SAVER:
        import varstore as tf
        tf.reset_default_graph()
        variables = [tf.Variable(a, name=name) for name, a in tensors]
        sess = tf.Session()
        sess.run(tf.global_variables_initializer())
        _SAVER.update(saver=tf.train.Saver(max_to_keep=None), sess=sess, variables=variables)
    return _SAVER["saver"], _SAVER["sess"]


def w_saver(tensors, d):
    saver, sess = saver_for(tensors)
    (d / "saver").mkdir(exist_ok=True)
    saver.save(sess, str(d / "saver" / "model.ckpt"), write_meta_graph=False)


WRITERS = {
    "raw f.write(memoryview)+fsync": w_raw,
    "varstore write_checkpoint": w_varstore,
    "varstore, fsync=False": w_varstore_nofsync,
    "varstore Saver.save": w_saver,
    "safetensors.numpy save_file": w_safetensors,
    "np.savez (npz)": w_savez,
    "torch.save": w_torch,
    "msgpack-numpy packb": w_msgpack_numpy,
}


# -- readers ------------------------------------------------------------------------------
def r_raw_into(d, dest):
    with open(d / "raw.bin", "rb", buffering=0) as f:
        for _, a in dest:
            f.readinto(memoryview(a).cast("B"))
    return 0


def r_varstore_into(d, dest):
    with CheckpointReader(d / "model.ckpt") as r:
        for name, a in dest:
            r.read_into(name, a)
    return 0


def r_raw_fresh(d, shapes):
    out = []
    with open(d / "raw.bin", "rb", buffering=0) as f:
        for _, shape in shapes:
            a = np.empty(shape, np.float32)
            f.readinto(memoryview(a).cast("B"))
            out.append(a)
    return out


def r_varstore_fresh(d, shapes):
    with CheckpointReader(d / "model.ckpt") as r:
        return [r.read_tensor(name) for name, _ in shapes]


def r_safetensors(d, shapes):
    from safetensors.numpy import load_file
    return load_file(d / "model.safetensors")


def r_npz(d, shapes):
    with np.load(d / "model.npz") as z:
        return {k: z[k] for k in z.files}


def r_torch(d, shapes):
    import torch
    torch.set_num_threads(1)
    return torch.load(d / "model.pt", weights_only=True)


def r_msgpack_numpy(d, shapes):
    import msgpack
    import msgpack_numpy
    with open(d / "model.msgpack", "rb") as f:
        return msgpack.unpackb(f.read(), object_hook=msgpack_numpy.decode)


OUTPUTS = {
    "raw f.write(memoryview)+fsync": ["raw.bin"],
    "varstore write_checkpoint": ["model.ckpt"],
    "varstore, fsync=False": ["nofsync.ckpt"],
    "varstore Saver.save": ["saver/model.ckpt", "saver/checkpoint"],
    "safetensors.numpy save_file": ["model.safetensors"],
    "np.savez (npz)": ["model.npz"],
    "torch.save": ["model.pt"],
    "msgpack-numpy packb": ["model.msgpack"],
}

def r_saver_into(d, dest):
    saver, sess = _SAVER["saver"], _SAVER["sess"]  # restores into the variables Saver.save wrote
    saver.restore(sess, str(d / "saver" / "model.ckpt"))
    return 0


INTO = {"raw readinto, existing arrays": r_raw_into, "varstore read_into, existing": r_varstore_into,
        "varstore Saver.restore, existing": r_saver_into}
FRESH = {
    "raw readinto, new arrays": r_raw_fresh,
    "varstore read_tensor, new arrays": r_varstore_fresh,
    "safetensors.numpy load_file": r_safetensors,
    "np.load(npz)": r_npz,
    "torch.load": r_torch,
    "msgpack-numpy unpackb": r_msgpack_numpy,
}


# -- one tensor ----------------------------------------------------------------------------
def one_target(shapes):
    """A 16 MiB-class tensor in the middle of the file (mix 1) or a small one (mix 2)."""
    name, shape = shapes[len(shapes) // 2]
    offset = sum(int(np.prod(s)) * 4 for _, s in shapes[:len(shapes) // 2])
    return name, shape, offset


def o_raw(d, target):
    name, shape, offset = target
    with open(d / "raw.bin", "rb", buffering=0) as f:
        f.seek(offset)
        a = np.empty(shape, np.float32)
        f.readinto(memoryview(a).cast("B"))
    return a


def o_varstore(d, target):
    with CheckpointReader(d / "model.ckpt") as r:
        return r.get_tensor(target[0])


def o_varstore_open(d, target):
    with CheckpointReader(d / "model.ckpt") as r:
        return len(r)


def o_safetensors(d, target):
    from safetensors import safe_open
    with safe_open(d / "model.safetensors", framework="numpy") as f:
        return f.get_tensor(target[0])


def o_torch(d, target):
    import torch
    return torch.load(d / "model.pt", mmap=True, weights_only=True)[target[0]].clone()


ONE = {
    "raw seek+readinto one tensor": o_raw,
    "varstore open + get_tensor": o_varstore,
    "varstore open only (index)": o_varstore_open,
    "safetensors safe_open+get_tensor": o_safetensors,
    "torch.load(mmap=True)[name]": o_torch,
}


def xxh3_all(tensors):
    for _, a in tensors:
        xxhash.xxh3_64_intdigest(memoryview(a).cast("B"))


# -- RSS probe (fresh subprocess) ---------------------------------------------------------------
def probe(kind: str, name: str, mix: str, size: int, d: Path) -> None:
    shapes = make_shapes(mix, size)
    returned = 0
    if kind == "write":
        tensors = make_tensors(mix, size)
        if name == "torch.save":
            import torch  # noqa: F401 - import cost is not the method's memory
        if "Saver" in name:
            saver_for(tensors)  # the variables hold the data: not the method's memory
        fn = lambda: WRITERS[name](tensors, d)  # noqa: E731
    elif kind == "into":
        dest = empty_like_all(mix, size)
        if "Saver" in name:
            saver_for(make_tensors(mix, size))
        fn = lambda: INTO[name](d, dest)  # noqa: E731
    elif kind == "fresh":
        returned = sum(int(np.prod(s)) * 4 for _, s in shapes)
        fn = lambda: FRESH[name](d, shapes)  # noqa: E731
    else:
        returned = int(np.prod(one_target(shapes)[1])) * 4 if "open only" not in name else 0
        target = one_target(shapes)
        fn = lambda: ONE[name](d, target)  # noqa: E731
    for mod in ("torch", "safetensors.numpy", "msgpack_numpy"):
        __import__(mod)
    gc.collect()
    reset_peak()  # VmHWM from here on
    base = _status("VmRSS")
    result = fn()
    peak = _status("VmHWM")
    del result
    print(json.dumps({"extra": peak - base - returned}))


def rss_extra(kind, name, mix, size, d) -> float:
    out = subprocess.run([sys.executable, __file__, "--probe", kind, name, "--mix", mix,
                          "--size-mib", str(size // MIB), "--dir", str(d)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["extra"] / MIB


# -- main ------------------------------------------------------------------------------------
def _direct_reclaim() -> int:
    """Times any process stalled to reclaim memory (machine-wide): when this grows during
    the runs, allocating fresh pages was slow for whoever did it then."""
    try:
        with open("/proc/vmstat") as f:
            return sum(int(v) for k, v in (line.split() for line in f) if k.startswith("allocstall"))
    except OSError:
        return -1


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads)."""
    gc.collect()
    c = _cpu()
    t = time.perf_counter()
    result = fn(*args)
    elapsed = time.perf_counter() - t
    cpu = _cpu() - c
    del result
    return elapsed, cpu


def bench_mix(mix: str, size: int, runs: int, root: Path, rss: bool, skip: set[str]) -> dict:
    d = root / mix
    d.mkdir()
    load_before = os.getloadavg()[0]
    stalls_before = _direct_reclaim()
    tensors = make_tensors(mix, size)
    shapes = [(n, a.shape) for n, a in tensors]
    dest = empty_like_all(mix, size)
    times: dict[str, list[tuple[float, float]]] = {}
    ops = ([("write", k, f) for k, f in WRITERS.items()] + [("into", k, f) for k, f in INTO.items()]
           + [("fresh", k, f) for k, f in FRESH.items()] + [("one", k, f) for k, f in ONE.items()])
    ops = [op for op in ops if not any(s in op[1] for s in skip)]
    target = one_target(shapes)
    for kind, _name, fn in ops:  # every output exists before the shuffled runs read them
        if kind == "write":
            fn(tensors, d)
    for run in range(runs):
        # Interleaved and shuffled: each run does every operation once, in a new order, so
        # that slow phases of a shared machine and ordering effects land on all of them.
        order = ops[:]
        random.Random(run).shuffle(order)
        for kind, name, fn in order:
            args = {"write": (tensors, d), "into": (d, dest), "fresh": (d, shapes), "one": (d, target)}[kind]
            if kind == "write":
                # Every writer starts alike: no old output to free, no dirty pages of the
                # previous writer still being flushed (both outside the timing).
                for f in OUTPUTS[name]:
                    (d / f).unlink(missing_ok=True)
                os.sync()
            times.setdefault(name, []).append(timed(fn, *args))
            if name == "varstore, fsync=False":
                (d / "nofsync.ckpt").unlink()  # never read: do not let it crowd the page cache
        times.setdefault("xxh3_64 of all data (in memory)", []).append(timed(xxh3_all, tensors))
        print(f"  {mix}: run {run + 1}/{runs} done", file=sys.stderr)
    with CheckpointReader(d / "model.ckpt") as r:
        assert all(err is None for _, err in r.verify())
        name = tensors[len(tensors) // 2][0]
        assert np.array_equal(r.get_tensor(name), dict(tensors)[name])
    stalls = _direct_reclaim() - stalls_before
    del tensors, dest
    gc.collect()
    result = {"median_ms": {k: statistics.median(w for w, _ in v) * 1e3 for k, v in times.items()},
              "min_ms": {k: min(w for w, _ in v) * 1e3 for k, v in times.items()},
              "cpu_ms": {k: statistics.median(c for _, c in v) * 1e3 for k, v in times.items()},
              "rss_mib": {}, "stalls": stalls}
    if rss:
        for kind, name, _ in ops:
            result["rss_mib"][name] = rss_extra(kind, name, mix, size, d)
            print(f"  {mix}: rss {name}: {result['rss_mib'][name]:+.0f} MiB", file=sys.stderr)
    result["load"] = (f"{load_before:.1f}/{os.getloadavg()[0]:.1f}, direct-reclaim stalls during "
                      f"the runs: {result['stalls']}")
    shutil.rmtree(d)
    return result


BASELINES = {
    **{k: "raw f.write(memoryview)+fsync" for k in WRITERS},
    "xxh3_64 of all data (in memory)": "raw f.write(memoryview)+fsync",
    **{k: "raw readinto, existing arrays" for k in INTO},
    **{k: "raw readinto, new arrays" for k in FRESH},
    **{k: "raw seek+readinto one tensor" for k in ONE},
}


def table(results: dict, size: int, runs: int) -> str:
    cols = [("median_ms", "wall ms"), ("min_ms", "min ms"), ("cpu_ms", "CPU ms")]
    head = f"{'operation':36}" + "".join(f"{label:>11}{'ratio':>7}" for _, label in cols) + f"{'+RSS MiB':>10}"
    lines = [f"{size // MIB} MiB float32, {runs} interleaved runs. wall = median wall time, min = fastest run, "
             f"CPU = median user+sys time of the process;",
             "ratio = that time / the raw baseline of its group; +RSS = peak RSS beyond inputs and outputs "
             "(fresh subprocess)."]
    groups = [("save", WRITERS), ("", {"xxh3_64 of all data (in memory)": 0}), ("restore into existing", INTO),
              ("restore into new arrays", FRESH), ("one tensor", ONE)]
    for mix, res in results.items():
        lines += ["", f"== {mix}  (load average before/after: {res['load']})", head, "-" * len(head)]
        for title, group in groups:
            if title:
                lines.append(f"[{title}]")
            for name in group:
                if name not in res["median_ms"]:
                    continue
                row = f"{name:36}"
                for key, _ in cols:
                    v = res[key][name]
                    base = res[key][BASELINES[name]]
                    row += f"{v:>11.1f}{v / base if base else float('nan'):>7.2f}"
                rss = res["rss_mib"].get(name)
                row += f"{'' if rss is None else f'{rss:+.0f}':>10}"
                lines.append(row)
    return "\n".join(lines)


def main() -> None:
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        # glibc raises its mmap threshold after the first large free, after which "new"
        # arrays reuse already-touched heap memory, depending on what ran before. A fixed
        # threshold gives every large array fresh pages, as in a process that restores
        # once: the same conditions for every method.
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 << 10)
        os.execv(sys.executable, [sys.executable, __file__, *sys.argv[1:]])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir on the same disk as /tmp)")
    ap.add_argument("--mix", action="append", choices=["64x16MiB", "2000small+4large", "1000small+4large"])
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--skip", action="append", default=[], help="skip operations whose name contains this (e.g. npz, torch, msgpack-numpy, safetensors)")
    ap.add_argument("--probe", nargs=2, metavar=("KIND", "NAME"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = args.size_mib * MIB
    if args.probe:
        probe(args.probe[0], args.probe[1], args.mix[0], size, Path(args.dir))
        return
    root = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=args.dir))
    try:
        results = {}
        for mix in args.mix or ["64x16MiB", "2000small+4large"]:
            results[mix] = bench_mix(mix, size, args.runs, root, not args.no_rss, set(args.skip))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(results, size, args.runs))


if __name__ == "__main__":
    main()
