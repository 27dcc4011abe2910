"""Saving to and restoring from ``memory://`` (fsspec) against local disk and the alternatives.

    .venv/bin/python benchmarks/remote.py [--size-mib 1024] [--tensors 64] [--reps 5] [--dir DIR]

The target (issue 9): ``write_checkpoint`` to ``memory://`` costs at most 1.2x
``write_checkpoint`` to local disk without fsync, in the same run (median of
--reps runs, cases alternating). ``memory://`` keeps the object in this
process, so the difference is what the URL path adds: fsspec's file object, the
commit marker, and the in-memory buffer's growth instead of the page cache's.

Baselines in the same run: the raw bytes written to a local file and to an
``io.BytesIO``; ``safetensors.numpy.save`` and ``torch.save`` into memory where
installed; the Saver (meta and state files too) into ``memory://`` and into a
local directory as shipped (durable). Restores read every tensor into existing
arrays. Before each local write the previous output is deleted and ``os.sync()``
runs outside the timing. Peak memory is the rise of this process's peak RSS
(``/proc/self/clear_refs``) beyond the bytes the case must hold (the object in
memory). This is a benchmark, not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import gc
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fsspec  # noqa: E402
from _rss import reset_peak as _reset_peak  # noqa: E402
from _rss import status_bytes as _status

import varstore as tf  # noqa: E402
from varstore.checkpoint import CheckpointReader, write_checkpoint  # noqa: E402

MIB = 1 << 20
MEM = "memory://varstore-bench"


def _clean_memory() -> None:
    fs = fsspec.filesystem("memory")
    if fs.exists("/varstore-bench"):
        fs.rm("/varstore-bench", recursive=True)


def _clean_dir(d: str) -> None:
    for name in os.listdir(d):
        p = os.path.join(d, name)
        shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
    os.sync()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--tensors", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", default=None, help="local directory to write (default: a new temp folder)")
    args = ap.parse_args(argv)
    if args.reps < 3:
        ap.error("--reps must be at least 3 (the median of at least three runs)")
    work = args.dir or tempfile.mkdtemp(prefix="varstore-remote-bench-")
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(0)
    per = (args.size_mib * MIB) // args.tensors // 4
    tensors = [(f"layer{i:04d}/kernel", rng.standard_normal(per, dtype=np.float32)) for i in range(args.tensors)]
    size = sum(a.nbytes for _, a in tensors)
    dest = [(n, np.ones_like(a)) for n, a in tensors]  # touched: restores measure reading, not page faults
    print(f"{size / 2**30:.3f} GiB in {args.tensors} float32 tensors; local dir {work}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}, fsspec {fsspec.__version__}")

    tf.reset_default_graph()
    for n, a in tensors:
        tf.Variable(a, name=n)
    tf.global_variables_initializer().run()
    saver = tf.train.Saver(max_to_keep=1)

    def raw_file():
        with open(os.path.join(work, "raw.bin"), "wb") as f:
            for _, a in tensors:
                f.write(memoryview(a).cast("B"))

    def raw_bytesio():
        buf = io.BytesIO()
        for _, a in tensors:
            buf.write(memoryview(a).cast("B"))
        return buf

    def read_all(path):
        with CheckpointReader(path) as r:
            for n, out in dest:
                r.read_into(n, out)

    writes = {
        "raw write to a local file (no fsync)": (raw_file, 0),
        "write_checkpoint -> local (no fsync)": (
            lambda: write_checkpoint(os.path.join(work, "model.ckpt"), tensors, fsync=False), 0),
        "raw write to io.BytesIO": (raw_bytesio, size),
        "write_checkpoint -> memory://": (lambda: write_checkpoint(f"{MEM}/model.ckpt", tensors), size),
        "Saver.save -> local dir (durable)": (lambda: saver.save(None, os.path.join(work, "s.ckpt")), 0),
        "Saver.save -> memory://": (lambda: saver.save(None, f"{MEM}/s.ckpt"), size),
    }
    try:
        from safetensors.numpy import save as st_save
        writes["safetensors.numpy.save -> bytes"] = (lambda: st_save(dict(tensors)), size)
    except ImportError:
        print("safetensors not installed: its case is skipped")
    try:
        import torch
        ttensors = {n: torch.from_numpy(a) for n, a in tensors}

        def torch_save():
            buf = io.BytesIO()
            torch.save(ttensors, buf)
            return buf
        writes["torch.save -> io.BytesIO"] = (torch_save, size)
    except ImportError:
        print("torch not installed: its case is skipped")
    reads = {
        "restore <- local (page cache)": lambda: read_all(os.path.join(work, "model.ckpt")),
        "restore <- memory://": lambda: read_all(f"{MEM}/model.ckpt"),
    }

    times: dict[str, list[float]] = {k: [] for k in [*writes, *reads]}
    peaks: dict[str, list[float]] = {k: [] for k in times}
    can_peak = _reset_peak()
    for _ in range(args.reps):
        for name, (fn, holds) in writes.items():
            _clean_memory()
            _clean_dir(work)
            gc.collect()
            _reset_peak()
            base = _status("VmRSS")
            t = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - t)
            peaks[name].append((_status("VmHWM") - base - holds) / MIB)
            del result
        write_checkpoint(os.path.join(work, "model.ckpt"), tensors, fsync=False)
        write_checkpoint(f"{MEM}/model.ckpt", tensors)
        for name, fn in reads.items():
            gc.collect()
            _reset_peak()
            base = _status("VmRSS")
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            peaks[name].append((_status("VmHWM") - base) / MIB)
    _clean_memory()
    med = {k: statistics.median(v) for k, v in times.items()}
    gib = size / 2**30
    load = os.getloadavg()[0]
    print(f"\nmedian of {args.reps} runs (wall seconds, GiB/s, extra peak RSS beyond what the case must hold"
          f"{'' if can_peak else ': not measurable here'}); load average now {load:.1f}")
    for name, m in med.items():
        runs = " ".join(f"{x:.3f}" for x in times[name])
        print(f"  {name:40s} {m:7.3f} s {gib / m:6.2f} GiB/s  +{max(peaks[name]):6.1f} MiB   [{runs}]")
    local, mem = med["write_checkpoint -> local (no fsync)"], med["write_checkpoint -> memory://"]
    print(f"\nratio memory:// / local disk (no fsync), write_checkpoint: {mem / local:.2f}x  (target <= 1.2x)")
    print(f"ratio Saver.save memory:// / local dir (durable): "
          f"{med['Saver.save -> memory://'] / med['Saver.save -> local dir (durable)']:.2f}x")
    print(f"ratio write_checkpoint -> memory:// / raw io.BytesIO: {mem / med['raw write to io.BytesIO']:.2f}x")
    for other in ("safetensors.numpy.save -> bytes", "torch.save -> io.BytesIO"):
        if other in med:
            print(f"ratio {other} / write_checkpoint -> memory://: {med[other] / mem:.2f}x")
    print(f"ratio restore memory:// / local: {med['restore <- memory://'] / med['restore <- local (page cache)']:.2f}x")
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
