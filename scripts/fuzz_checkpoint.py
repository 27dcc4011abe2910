#!/usr/bin/env python3
"""Fuzz the readers of every file a checkpoint directory holds: checkpoints, meta files
and the state file. Only ``varstore.errors`` (devices.errors.OpError) may escape, and
no input may make a reader allocate more than its size justifies.

    python scripts/fuzz_checkpoint.py --seed-corpus CORPUS       # write the seed corpus
    python scripts/fuzz_checkpoint.py CORPUS -max_total_time=600  # atheris (libFuzzer flags)
    python scripts/fuzz_checkpoint.py --engine random --time 600  # without atheris
    python scripts/fuzz_checkpoint.py --replay FILE...            # run inputs (crash files) again

One input is one file: its first byte picks the target, the rest is the file.

- ``(byte & 0x7f) % 3 == 0``: a checkpoint, opened with ``CheckpointReader`` and as a
  ``CheckpointSet`` (a valid shard file sits beside it, so a main file's shard list
  is followed); every tensor is read every way (mapped, copied, into a buffer, in
  chunks) and verified. With bit 0x80 set, the index checksum in the footer is
  recomputed first, so mutations of the index reach its decoder and validator
  instead of stopping at the checksum (a hostile file can carry a right checksum).
- ``(byte & 0x7f) % 3 == 1``: a meta file, read with ``read_meta_graph`` and rebuilt with
  ``import_meta_graph`` in a fresh graph.
- ``(byte & 0x7f) >= 0x60`` (before the rules above): a TensorFlow bundle, read with
  ``TFBundleReader``, ``open_checkpoint`` and ``list_variables`` (every tensor every way,
  slices, ``verify``, ``object_names``). Bit 0x80 clear: the file is the ``.index`` (bit 0x01
  set: its block CRC32Cs are recomputed first, so mutations reach the table and entry
  decoders), beside a valid data file; bit 0x80 set: the file is the data file, beside a
  valid index.
- ``(byte & 0x7f) % 3 == 2``: a state file ``checkpoint``: ``get_checkpoint_state``,
  ``latest_checkpoint``, and when it names a file in its directory (a valid
  checkpoint sits there), ``CheckpointSet`` and ``varstore verify`` on the directory.

Memory: tracemalloc traces each input's run; the peak of its allocations must stay
under ``MEM_FACTOR * len(file) + MEM_SLACK``. msgpack turns one byte into
at most ~86 bytes of Python objects (a map of one entry holding an empty map is 3
bytes and 248 bytes of objects), so MEM_FACTOR is 128; what is refused is any
allocation sized by a length, count or shape the file claims but does not contain.

atheris (``pip install atheris``; libFuzzer with coverage of varstore's Python code)
is used when it imports; otherwise ``--engine random`` mutates the seed corpus
(flips, overwrites, inserts, deletes, truncations, splices, interesting integers,
and structural mutations of the decoded msgpack/text) as fast as it can, with the
same checks. Crashes are written to ``--artifacts`` (default ``fuzz-artifacts/``)
and can be replayed with ``--replay``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import random
import sys
import tempfile
import time
import traceback
import tracemalloc

MEM_FACTOR = 128
MEM_SLACK = 1 << 20
# The fuzzing engines trace all the time (CPython 3.11 keeps ~9 KB per tracemalloc start/stop
# cycle: millions of runs would grow the process); tests trace only while the readers run, so
# that hypothesis itself runs untraced and fast.
TRACE_ALWAYS = False

TARGETS = ("checkpoint", "meta", "state", "tf")
SHARD_NAME = "m.ckpt.shard-0-of-1.5eed5eed"
_scratch = None


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# -- the targets --------------------------------------------------------------------------------
def _scratch_dir() -> str:
    """A directory (tmpfs when there is one) with a valid shard and checkpoint beside the inputs."""
    global _scratch
    if _scratch is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _scratch = tempfile.mkdtemp(prefix="varstore-fuzz-", dir=base)
        import numpy as np

        from varstore.checkpoint import write_checkpoint
        write_checkpoint(os.path.join(_scratch, SHARD_NAME), [("s", np.arange(3, dtype=np.float32))],
                         extra={"shard_of": "m.ckpt", "save_id": "5eed5eed", "shard": 0, "num_shards": 1},
                         fsync=False)
        write_checkpoint(os.path.join(_scratch, "model.ckpt-1"), [("w", np.ones((2, 2), np.float32))],
                         extra={"global_step": 1}, fsync=False)
    return _scratch


def cleanup() -> None:
    """Remove the scratch directory (tests call this; a fuzzing run leaves it for the crash files)."""
    global _scratch
    if _scratch is not None:
        import shutil
        shutil.rmtree(_scratch, ignore_errors=True)
        _scratch = None


def fix_index_checksum(data: bytes) -> bytes:
    """``data`` with the footer's index checksum recomputed, when the footer points inside the file."""
    import xxhash

    from varstore.checkpoint import format as fmt
    if len(data) < fmt.HEADER_SIZE + fmt.FOOTER_SIZE:
        return data
    footer = fmt.parse_footer(data[-fmt.FOOTER_SIZE:])
    if footer is None:
        return data
    version, off, n, _ = footer
    if off + n > len(data) - fmt.FOOTER_SIZE:
        return data
    return data[:-fmt.FOOTER_SIZE] + fmt.pack_footer(off, n, xxhash.xxh3_64_intdigest(data[off:off + n]),
                                                     version=version)


def _read_all(r) -> None:
    from devices.errors import DataLossError
    _ = (r.extra, r.get_variable_to_shape_map(), r.get_variable_to_dtype_map(), len(r), repr(r))
    for name in r.names():
        for read in (r.get_tensor, r.read_tensor,
                     lambda n: r.read_into(n, bytearray(r.nbytes(n))),
                     lambda n: [bytes(c) for c in r.iter_chunks(n, 4096)] if hasattr(r, "iter_chunks") else None):
            try:
                read(name)
            except DataLossError:
                pass


def run_checkpoint(data: bytes, fixup: bool) -> None:
    from devices.errors import OpError
    from varstore.checkpoint import CheckpointReader
    from varstore.checkpoint.shards import CheckpointSet
    if fixup:
        data = fix_index_checksum(data)
    path = os.path.join(_scratch_dir(), "m.ckpt")
    with open(path, "wb") as f:
        f.write(data)
    try:
        with CheckpointReader(path) as r:
            _read_all(r)
            r.verify()
    except OpError:
        pass
    try:
        with CheckpointSet(path) as c:
            _read_all(c)
    except OpError:
        pass


def run_meta(data: bytes) -> None:
    import varstore as tf
    from devices.errors import OpError
    from varstore.train.meta_graph import import_meta_graph, read_meta_graph
    path = os.path.join(_scratch_dir(), "m.meta")
    with open(path, "wb") as f:
        f.write(data)
    try:
        read_meta_graph(path)
    except OpError:
        return
    tf.reset_default_graph()
    try:
        import_meta_graph(path)
    except OpError:
        pass
    finally:
        tf.reset_default_graph()


def run_state(data: bytes) -> None:
    from devices.errors import OpError
    from varstore.checkpoint.shards import CheckpointSet
    from varstore.tools import cli
    from varstore.train import checkpoint_state as cs
    directory = _scratch_dir()
    with open(os.path.join(directory, "checkpoint"), "wb") as f:
        f.write(data)
    try:
        st = cs.get_checkpoint_state(directory)
        latest = cs.latest_checkpoint(directory)
    except OpError:
        return
    if st is None:
        return
    listed = [st.model_checkpoint_path] + st.all_model_checkpoint_paths
    # Only follow paths inside the scratch directory: the fuzzer must not read the machine's files.
    if all(os.path.dirname(os.path.abspath(p)) == directory for p in listed):
        if latest is not None:
            try:
                with CheckpointSet(latest) as c:
                    _read_all(c)
            except OpError:
                pass
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                cli.cmd_verify(argparse.Namespace(path=directory))  # `varstore verify DIR`, without argparse
            except OpError:
                pass


class MemoryBoundExceeded(AssertionError):
    pass


# -- TensorFlow bundles ----------------------------------------------------------------------------
def target_of(selector: int) -> str:
    """Which target an input's first byte picks (module docstring)."""
    return "tf" if selector & 0x7F >= 0x60 else TARGETS[(selector & 0x7F) % 3]


def tf_seed_bundle() -> tuple[bytes, bytes]:
    """(index, data) of one bundle: every dtype TF stores, strings, a scalar, an empty tensor, a
    TF 2 object key, and a partitioned tensor whose two slices are entries of their own."""
    import numpy as np

    from varstore.checkpoint.tf import TFBundleReader, sstable, wire, write_bundle
    from varstore.checkpoint.tf import slices as sl
    d = tempfile.mkdtemp(prefix="varstore-tfseed-")
    try:
        rng = np.random.default_rng(1)
        dts = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
               "float32", "float64", "complex64", "complex128"]
        tensors = [(f"t/{dt}", rng.integers(0, 2, (2, 3)).astype(dt)) for dt in dts]
        import ml_dtypes
        tensors += [("t/bfloat16", np.ones(3, ml_dtypes.bfloat16)), ("scalar", np.array(7.5)),
                    ("empty", np.zeros((0, 4), np.float32)), ("s", np.array([b"ab", b"", b"\xff"], dtype=object)),
                    ("m/k/.ATTRIBUTES/VARIABLE_VALUE", np.arange(4.0)),
                    ("p0", np.arange(6, dtype=np.float32).reshape(2, 3)), ("p1", -np.ones((2, 3), np.float32))]
        write_bundle(os.path.join(d, "b"), tensors, fsync=False)
        with TFBundleReader(os.path.join(d, "b")) as r:
            pieces = {n: r._index.tensors[n].pieces[0] for n in ("p0", "p1")}
        items = sstable.read_table(_read(os.path.join(d, "b.index")))
        exts = [((0, 2), (0, -1)), ((2, 2), (0, -1))]
        extra = [(b"w", wire.encode_entry(wire.Entry(dtype=1, shape=(4, 3), slices=exts)))]
        for ext, name in zip(exts, ("p0", "p1")):
            p = pieces[name]
            extra.append((sl.slice_key("w", ext), wire.encode_entry(wire.Entry(
                dtype=1, shape=(2, 3), offset=p.offset, size=p.size, crc32c=p.crc32c))))
        # p0 and p1 stay listed too: the slices share their bytes, so drop them to keep claims honest.
        items = [kv for kv in items if kv[0] not in (b"p0", b"p1")] + extra
        index = sstable.build_table([items[0]] + sorted(items[1:]))
        return index, _read(os.path.join(d, "b.data-00000-of-00001"))
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


_tf_files: tuple[bytes, bytes] | None = None


def fix_tf_crcs(data: bytes) -> bytes:
    """``data`` (a table) with the CRC32C of every block its footer and index reach recomputed."""
    from varstore.checkpoint.tf import sstable
    from varstore.checkpoint.tf.crc32c import crc32c, mask
    from varstore.checkpoint.tf.wire import WireError
    buf = bytearray(data)
    n = len(buf)

    def fix(off: int, size: int) -> None:
        if off >= 0 and off + size + 5 <= n - sstable.FOOTER_SIZE:
            buf[off + size + 1:off + size + 5] = mask(crc32c(bytes(buf[off:off + size + 1]))).to_bytes(4, "little")

    try:
        meta_off, meta_size, p = sstable._handle(data, n - 48, n - 8)
        index_off, index_size, _ = sstable._handle(data, p, n - 8)
    except (WireError, IndexError):
        return data
    fix(meta_off, meta_size)
    fix(index_off, index_size)
    try:
        for _, handle in sstable._entries(memoryview(bytes(buf))[index_off:index_off + index_size], "index", None):
            off, size, _ = sstable._handle(handle, 0, len(handle))
            fix(off, size)
    except (sstable.TableError, WireError, IndexError, ValueError):
        pass
    return bytes(buf)


def run_tf(data: bytes, selector: int) -> None:
    """A bundle whose index (or data file) is ``data``, the other file valid: read it every way."""
    global _tf_files
    from devices.errors import OpError
    from varstore.checkpoint.shards import open_checkpoint
    from varstore.checkpoint.tf import TFBundleReader, object_names
    if _tf_files is None:
        _tf_files = tf_seed_bundle()
    index, valid_data = _tf_files
    if selector & 0x80:
        index, body = index, data
    else:
        index, body = (fix_tf_crcs(data) if selector & 0x01 else data), valid_data
    prefix = os.path.join(_scratch_dir(), "tfb")
    with open(prefix + ".index", "wb") as f:
        f.write(index)
    with open(prefix + ".data-00000-of-00001", "wb") as f:
        f.write(body)
    try:
        with TFBundleReader(prefix) as r:
            _read_all(r)
            r.verify()
            object_names(r, by="full_name")
            for name in r.names():
                try:
                    r.read_slice(name, [0] * len(r.shape(name)), list(r.shape(name)))
                except OpError:
                    pass
    except OpError:
        pass
    try:
        with open_checkpoint(prefix) as r:
            r.get_variable_to_shape_map()
    except OpError:
        pass


_warm = False


def warm_up() -> None:
    """Run every seed once before measuring: first calls import modules and fill caches."""
    global _warm
    if _warm:
        return
    _warm = True
    for data in seed_inputs().values():
        one_input(data, check_memory=False)


def one_input(data: bytes, check_memory: bool = True) -> None:
    """The fuzz target: raises (a crash) when anything but an OpError escapes or memory is exceeded."""
    if not data:
        return
    if check_memory and not _warm:
        warm_up()
    selector, body = data[0], data[1:]
    target = target_of(selector)
    limit = MEM_FACTOR * len(body) + MEM_SLACK
    if TRACE_ALWAYS and not tracemalloc.is_tracing():
        tracemalloc.start()
    tracing = tracemalloc.is_tracing()
    for _attempt in range(2):
        if not tracing:
            tracemalloc.start()  # traced only while the readers run
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            if target == "checkpoint":
                run_checkpoint(body, fixup=bool(selector & 0x80))
            elif target == "meta":
                run_meta(body)
            elif target == "tf":
                run_tf(body, selector)
            else:
                run_state(body)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            if not tracing:
                tracemalloc.stop()
        if not check_memory or peak <= limit:
            return
        # Over the bound: run it again, since a code path's first run imports modules and fills
        # caches once per process. Over the bound twice is a finding.
    raise MemoryBoundExceeded(f"{target}: {peak} bytes allocated for a {len(body)}-byte file")


# -- the seed corpus ----------------------------------------------------------------------------
def seed_inputs() -> dict[str, bytes]:
    """Real files (selector byte + bytes): checkpoints of every dtype, multi-bin, sharded, empty;
    meta files with every initializer kind and optimizer slots; state files."""
    import numpy as np

    import varstore as tf
    from varstore.checkpoint import format as fmt
    from varstore.checkpoint import write_checkpoint
    out: dict[str, bytes] = {}
    d = tempfile.mkdtemp(prefix="varstore-seeds-")
    rng = np.random.default_rng(0)
    dtypes = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
              "bfloat16", "float32", "float64", "complex64", "complex128"]
    tensors = [(f"t/{dt}", np.asarray(rng.integers(0, 2, (2, 3))).astype(tf.as_dtype(dt))) for dt in dtypes]
    tensors += [("scalar", np.array(7.5)), ("empty", np.zeros((0, 4), np.float32)), ("ü/name:0", np.arange(5))]
    files = {
        "mixed": (tensors, {"global_step": 3, "note": "x", "nested": {"a": [1, 2.5, None, b"b"]}}),
        "one": ([("w", np.arange(4, dtype=np.float32))], {}),
        "none": ([], {}),
        "sharded": ([("v", np.ones(2, np.float32))],
                    {"shards": [{"file": SHARD_NAME, "device": "/job:ps/task:0", "tensors": 1}],
                     "save_id": "5eed5eed"}),
    }
    for name, (ts, extra) in files.items():
        p = os.path.join(d, name)
        write_checkpoint(p, ts, extra=extra, fsync=False)
        raw = _read(p)
        out[f"checkpoint-{name}"] = bytes([0]) + raw
        out[f"checkpoint-{name}-fixup"] = bytes([0x80]) + raw
    old = fmt.MAX_BIN_BYTES
    fmt.MAX_BIN_BYTES = 64
    try:
        write_checkpoint(os.path.join(d, "multi"), [("big", rng.random(40)), ("tail", np.arange(3, dtype=np.uint8))],
                         fsync=False)
    finally:
        fmt.MAX_BIN_BYTES = old
    raw = _read(os.path.join(d, "multi"))
    out["checkpoint-multi"], out["checkpoint-multi-fixup"] = bytes([0]) + raw, bytes([0x80]) + raw
    # Meta files: every initializer kind, slots, devices, a saver with a name map.
    tf.reset_default_graph()
    try:
        a = tf.Variable(tf.random_normal([3, 2], seed=1), name="a")
        b = tf.Variable(tf.zeros([2]), name="b")
        tf.Variable(a.initialized_value() * 2.0 + 1.0, name="c")
        tf.Variable(np.arange(6, dtype=np.int32).reshape(2, 3), name="d")
        tf.Variable(tf.truncated_normal([4], stddev=0.1), name="e")
        with tf.device("/cpu:0"):
            tf.Variable(tf.random_uniform([2, 2], -1, 1, seed=3), name="f")
        tf.Variable(-tf.ones([2], dtype=tf.float64), name="g", trainable=False)
        step = tf.train.get_or_create_global_step()
        train = tf.train.AdamOptimizer(0.1).apply_gradients(
            [(np.ones((3, 2), np.float32), a), (np.ones(2, np.float32), b)], global_step=step)
        tf.global_variables_initializer().run()  # after the train op: its slots are initialized too
        train.run()
        saver = tf.train.Saver({"renamed/a": a, "b": b}, max_to_keep=3)
        for name, s in (("meta-saver", saver), ("meta-plain", None)):
            p = os.path.join(d, name)
            tf.train.export_meta_graph(p, saver=s)
            out[name] = bytes([1]) + _read(p)
        saver.save(None, os.path.join(d, "model.ckpt"), global_step=1)
        saver.save(None, os.path.join(d, "model.ckpt"), global_step=2)
    finally:
        tf.reset_default_graph()
    # State files: the Saver's own, and TF-style variants (absolute paths, comments, escapes).
    out["state-saver"] = bytes([2]) + _read(os.path.join(d, "checkpoint"))
    scratch = _scratch_dir()
    out["state-handmade"] = bytes([2]) + (
        '# comment\nmodel_checkpoint_path: "model.ckpt-1"\n'
        f'all_model_checkpoint_paths: "{scratch}/model.ckpt-1"\n'
        'all_model_checkpoint_paths: "model.ckpt-1"\nall_model_checkpoint_timestamps: 1.5\n'
        'all_model_checkpoint_timestamps: 2e9\nlast_preserved_timestamp: 0.0\nunknown_key: "x\\"y\\n"\n').encode()
    for p in os.listdir(d):
        os.unlink(os.path.join(d, p))
    os.rmdir(d)
    index, data = tf_seed_bundle()
    out["tf-index"], out["tf-index-fixup"], out["tf-data"] = bytes([0x60]) + index, bytes([0x61]) + index, \
        bytes([0xE0]) + data
    return out


def write_seed_corpus(directory: str) -> int:
    os.makedirs(directory, exist_ok=True)
    seeds = seed_inputs()
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    return len(seeds)


# -- engines ------------------------------------------------------------------------------------
INTERESTING = [0, 1, 63, 64, 65, 127, 128, 255, 256, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
               2**63 - 1, 2**63, 2**64 - 1]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """One to four byte-level mutations of the file in ``data`` (the selector byte stays,
    but for the checkpoint's fix-the-checksum bit)."""
    sel, buf = data[0], bytearray(data[1:])
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
        n = len(buf)
        op = rng.randrange(9)
        pos = rng.randrange(n) if n else 0
        if op == 0 and n:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[pos] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0xC0, 0xC6, 0xCF, 0xDC, 0xDD, 0xDE, 0xDF, 0x90, 0x80,
                                   0xA0, 0xD9, 0xC4, rng.randrange(256)])
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3 and n:
            del buf[pos:pos + rng.randint(1, 32)]
        elif op == 4 and n:
            del buf[pos:]
        elif op == 5 and n >= 8:  # an interesting big-endian integer over 1, 2, 4 or 8 bytes
            width = rng.choice([1, 2, 4, 8])
            v = rng.choice(INTERESTING) % (1 << (8 * width))
            buf[pos:pos + width] = v.to_bytes(width, "big")
        elif op == 6 and corpus:  # splice from another input
            other = rng.choice(corpus)
            if len(other) > 2:
                s = rng.randrange(1, len(other))  # never the other's selector byte
                buf[pos:pos + rng.randint(0, 64)] = other[s:s + rng.randint(1, 64)]
        elif op == 7 and n:  # duplicate a block
            s = rng.randrange(n)
            buf[pos:pos] = buf[s:s + rng.randint(1, 64)]
        elif op == 8:
            sel ^= 0x80
    return bytes([sel]) + bytes(buf)


def structural(rng: random.Random, data: bytes) -> bytes:
    """Decode the file (a meta file, a checkpoint index or a state file), replace one value
    deep inside with a hostile one, encode it again."""
    import msgpack
    sel, body = data[:1], data[1:]
    hostile = [None, True, -1, 0, 2**63 - 1, 2**64 - 1, -2**63, 1e308, float("inf"), float("nan"), "", "x" * 300,
               b"\x00", [], {}, [[[[]]]], {"kind": "negate"}, {"": None}, [-1], [2**40, 2**40], "float32",
               "object", "../x", "/abs/path", {"kind": "binary", "op": "add", "a": 1, "b": {}}]

    def walk(obj, depth=0):
        if isinstance(obj, dict) and obj and rng.random() < 0.8:
            k = rng.choice(list(obj))
            if rng.random() < 0.3 or depth > 6:
                obj[k] = rng.choice(hostile)
            else:
                walk(obj[k], depth + 1)
        elif isinstance(obj, list) and obj:
            i = rng.randrange(len(obj))
            if rng.random() < 0.3 or depth > 6:
                obj[i] = rng.choice(hostile)
            else:
                walk(obj[i], depth + 1)
    if sel and target_of(sel[0]) == "tf":
        return data  # byte mutations only: a table has no structure msgpack could walk
    if sel and (sel[0] & 0x7F) % 3 == 2:  # state file: replace or duplicate a line's value
        lines = body.decode("utf-8", "replace").splitlines()
        if lines:
            i = rng.randrange(len(lines))
            key = lines[i].split(":")[0]
            values = ['""', "1e999", "-0", "nan", '"' + "a" * 500 + '"', '"/"', '".."', '"\\\\"', '"\\n"']
            lines[i] = key + ": " + rng.choice(values)
            if rng.random() < 0.3:
                lines.insert(rng.randrange(len(lines) + 1), lines[i])
        return sel + "\n".join(lines).encode()
    if sel and (sel[0] & 0x7F) % 3 == 0:  # checkpoint: mutate the index, fix its checksum
        from varstore.checkpoint import format as fmt
        footer = fmt.parse_footer(body[-fmt.FOOTER_SIZE:]) if len(body) >= fmt.FOOTER_SIZE else None
        if footer is None:
            return data
        _, off, n, _ = footer
        try:
            index = msgpack.unpackb(body[off:off + n], strict_map_key=False)
        except Exception:  # noqa: BLE001
            return data
        walk(index)
        try:
            raw = msgpack.packb(index, use_bin_type=True)
        except Exception:  # noqa: BLE001
            return data
        return bytes([0x80]) + fix_index_checksum(body[:off] + raw + fmt.pack_footer(off, len(raw), 0))
    try:
        meta = msgpack.unpackb(body, strict_map_key=False)
        walk(meta)
        return sel + msgpack.packb(meta, use_bin_type=True)
    except Exception:  # noqa: BLE001
        return data


def save_crash(artifacts: str, data: bytes, err: BaseException) -> str:
    os.makedirs(artifacts, exist_ok=True)
    path = os.path.join(artifacts, "crash-" + hashlib.sha1(data).hexdigest())
    with open(path, "wb") as f:
        f.write(data)
    with open(path + ".txt", "w") as f:
        f.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
    return path


def crash_signature(err: BaseException) -> str:
    """Exception type and the innermost varstore frame: what makes a crash unique."""
    tb = traceback.extract_tb(err.__traceback__)
    ours = [f for f in tb if "varstore" in f.filename or "devices" in f.filename]
    where = f"{os.path.basename(ours[-1].filename)}:{ours[-1].lineno}" if ours else "?"
    return f"{type(err).__name__} at {where}"


def run_random(corpus_dirs: list[str], seconds: float, seed: int, artifacts: str) -> dict:
    rng = random.Random(seed)
    corpus = [_read(os.path.join(d, n)) for d in corpus_dirs for n in sorted(os.listdir(d))
              if not n.startswith(".")] if corpus_dirs else list(seed_inputs().values())
    corpus = [c for c in corpus if c]
    by_target = {t: [c for c in corpus if target_of(c[0]) == t] for t in TARGETS}
    by_target = {t: cs for t, cs in by_target.items() if cs}
    stats = {"executions": 0, "crashes": 0, "unique": {}, "per_target": {t: 0 for t in TARGETS}}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        base = rng.choice(by_target[rng.choice(sorted(by_target))])  # each target as often
        data = structural(rng, base) if rng.random() < 0.3 else mutate(rng, base, corpus)
        if not data:
            continue
        stats["executions"] += 1
        stats["per_target"][target_of(data[0])] += 1
        try:
            one_input(data)
        except Exception as e:  # noqa: BLE001 - every escape is a finding
            stats["crashes"] += 1
            sig = crash_signature(e)
            if sig not in stats["unique"]:
                stats["unique"][sig] = save_crash(artifacts, data, e)
                print(f"CRASH {sig}: {str(e)[:200]} -> {stats['unique'][sig]}", flush=True)
        if stats["executions"] % 5000 == 0:
            print(f"#{stats['executions']} crashes {stats['crashes']} unique {len(stats['unique'])}", flush=True)
    return stats


def replay(paths: list[str]) -> int:
    bad = 0
    for p in paths:
        data = _read(p)
        try:
            one_input(data)
            print(f"ok    {p}")
        except Exception as e:  # noqa: BLE001
            bad += 1
            print(f"CRASH {p}: {crash_signature(e)}: {str(e)[:300]}")
    return 1 if bad else 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    ap.add_argument("--engine", choices=["atheris", "random"], default=None,
                    help="default: atheris when it imports, else random")
    ap.add_argument("--seed-corpus", metavar="DIR", help="write the seed corpus to DIR and exit")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs and report")
    ap.add_argument("--time", type=float, default=60, help="random engine: seconds to run")
    ap.add_argument("--seed", type=int, default=0, help="random engine: RNG seed")
    ap.add_argument("--artifacts", default="fuzz-artifacts", help="where crashes are written")
    args, rest = ap.parse_known_args(argv)
    global TRACE_ALWAYS
    TRACE_ALWAYS = True
    if args.seed_corpus:
        print(f"{write_seed_corpus(args.seed_corpus)} seed inputs in {args.seed_corpus}")
        return 0
    if args.replay:
        return replay(args.replay)
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "random"
    corpus_dirs = [a for a in rest if not a.startswith("-")]
    if engine == "random":
        stats = run_random(corpus_dirs, args.time, args.seed, args.artifacts)
        print(f"random engine: {stats['executions']} executions ({stats['per_target']}), {stats['crashes']} crashes, "
              f"{len(stats['unique'])} unique: {stats['unique']}")
        return 1 if stats["unique"] else 0
    import atheris
    with atheris.instrument_imports(include=["varstore", "devices", "msgpack"]):
        import varstore  # noqa: F401
        import varstore.checkpoint  # noqa: F401
        import varstore.checkpoint.shards  # noqa: F401
        import varstore.checkpoint.tf  # noqa: F401
        import varstore.tools.cli  # noqa: F401
        import varstore.train.meta_graph  # noqa: F401
    _scratch_dir()
    os.makedirs(args.artifacts, exist_ok=True)
    flags = [a for a in rest if a.startswith("-")]
    if not any(f.startswith("-artifact_prefix") for f in flags):
        flags.append(f"-artifact_prefix={os.path.join(args.artifacts, '')}")
    atheris.Setup([sys.argv[0]] + flags + corpus_dirs, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
