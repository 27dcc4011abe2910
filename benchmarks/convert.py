"""Converting a safetensors file into a varstore checkpoint, against copying the file.

    .venv/bin/python benchmarks/convert.py [--size-mib 1024] [--tensors 256] [--reps 5] [--dir DIR]

The target (issue 9): converting 1 GiB of safetensors into our format costs at
most 1.3x ``shutil.copyfile`` of the same file, measured in the same run
(median of --reps runs, alternating). Both sides are timed twice:

- ``page cache``: no fsync on either side (``convert(fsync=False)`` vs ``copyfile``);
- ``durable``: ``convert()`` as shipped (fsync of the file and the directory) vs
  ``copyfile`` followed by an fsync of the copy.

Before each timed run the previous outputs are deleted and ``os.sync()`` flushes
the page cache's dirty data, outside the timing, so no run pays for another's
writeback. The source file is read once first, so every run reads it from the
page cache. The reverse direction (varstore -> safetensors) is reported too.
This is a benchmark, not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from varstore.tools.convert import convert  # noqa: E402


def make_source(path: str, size_mib: int, tensors: int) -> None:
    """A safetensors file of float32 tensors totalling size_mib MiB (a few bfloat16 ones too)."""
    rng = np.random.default_rng(0)
    per = (size_mib << 20) // tensors // 4
    arrays = {}
    for i in range(tensors):
        a = rng.standard_normal(per, dtype=np.float32)
        arrays[f"layer{i:04d}/{'kernel' if i % 2 == 0 else 'bias'}"] = a
    try:
        from safetensors.numpy import save_file  # the file a user would have
        save_file(arrays, path)
    except ImportError:  # our own safetensors writer
        from varstore.checkpoint import write_checkpoint
        tmp = path + ".src.ckpt"
        write_checkpoint(tmp, sorted(arrays.items()), fsync=False)
        convert(tmp, path, progress=False, overwrite=True)
        os.unlink(tmp)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _clean(*paths: str) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    os.sync()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--tensors", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to write (default: a new folder in the temp dir)")
    args = ap.parse_args(argv)
    if args.reps < 3:
        ap.error("--reps must be at least 3 (the median of at least three runs)")

    work = args.dir or tempfile.mkdtemp(prefix="varstore-convert-bench-")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, "model.safetensors")
    copy, ckpt, back = (os.path.join(work, n) for n in ("copy.safetensors", "model.ckpt", "back.safetensors"))
    t0 = time.perf_counter()
    make_source(src, args.size_mib, args.tensors)
    size = os.path.getsize(src)
    with open(src, "rb") as f:  # into the page cache
        while f.read(64 << 20):
            pass
    print(f"source: {src}: {size / 2**30:.3f} GiB in {args.tensors} tensors (made in {time.perf_counter() - t0:.1f} s)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}")

    cases = {
        "copyfile": lambda: shutil.copyfile(src, copy),
        "convert (no fsync)": lambda: convert(src, ckpt, progress=False, fsync=False),
        "copyfile + fsync": lambda: (shutil.copyfile(src, copy), _fsync_path(copy)),
        "convert (durable)": lambda: convert(src, ckpt, progress=False),
        "reverse: ckpt -> safetensors (no fsync)": lambda: convert(ckpt, back, progress=False, fsync=False),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _rep in range(args.reps):
        for name, fn in cases.items():
            if name.startswith("reverse"):
                _clean(back)  # reads the checkpoint the case before it wrote
            else:
                _clean(copy, ckpt)
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    med = {k: statistics.median(v) for k, v in times.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    gib = size / 2**30
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nmedian of {args.reps} runs: wall seconds, GiB/s, and this process's CPU seconds (user+sys, "
          f"which other processes sharing the machine do not inflate); load average now {load:.1f}")
    for name, m in med.items():
        runs = " ".join(f"{x:.3f}" for x in times[name])
        print(f"  {name:42s} {m:7.3f}  {gib / m:5.2f} GiB/s  cpu {mcpu[name]:6.3f}   [{runs}]")
    for label, a, b in (("convert / copyfile, page cache", "convert (no fsync)", "copyfile"),
                        ("convert / copyfile, durable   ", "convert (durable)", "copyfile + fsync"),
                        ("reverse / copyfile, page cache", "reverse: ckpt -> safetensors (no fsync)", "copyfile")):
        target = "" if label.startswith("reverse") else "  (target <= 1.3x)"
        print(f"ratio {label}: wall {med[a] / med[b]:.2f}x, cpu {mcpu[a] / mcpu[b]:.2f}x{target}")
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
