"""Hostile meta files, state files and checkpoint indexes: only varstore.errors escape, and
no reader allocates more than the file's size justifies.

A fixed-budget hypothesis version of ``scripts/fuzz_checkpoint.py`` (same targets, same
seed files, same memory bound; its docstring explains them), complementing
``tests/test_checkpoint_hostile.py``: that one mutates whole checkpoints, whose index
checksum stops most index mutations; here the meta and state readers are covered, and
checkpoint index mutations get a recomputed checksum so that they reach the decoder
and the validator. Then the regressions the fuzzer found.
"""
from __future__ import annotations

import importlib.util
import os
import threading
import time
import tracemalloc
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import varstore as tf
from devices.errors import DataLossError, NotFoundError, OpError
from varstore.checkpoint import format as fmt
from varstore.train import checkpoint_state as cs
from varstore.train.meta_graph import import_meta_graph, read_meta_graph

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fuzz_checkpoint.py"
_spec = importlib.util.spec_from_file_location("fuzz_checkpoint", SCRIPT)
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

SEEDS = fuzz.seed_inputs()
META = {k: v for k, v in SEEDS.items() if k.startswith("meta-")}
STATE = {k: v for k, v in SEEDS.items() if k.startswith("state-")}
CKPT = {k: v for k, v in SEEDS.items() if k.startswith("checkpoint-") and not k.endswith("-fixup")}


@pytest.fixture(scope="module", autouse=True)
def scratch():
    """The targets' scratch directory (a valid shard and checkpoint): removed afterwards."""
    fuzz.warm_up()
    yield
    fuzz.cleanup()
    tf.reset_default_graph()


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

byte_op = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(0, 7)),
    st.tuples(st.just("overwrite"), st.integers(0, 2**20),
              st.binary(min_size=1, max_size=9) | st.sampled_from([b"\xc0", b"\xdd\xff\xff\xff\xff", b"\x90",
                                                                   b"\x80", b"\xcf" + b"\xff" * 8, b"\xd9\xff"])),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 16)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20), st.none()),
)


def apply_ops(data: bytes, ops, lo: int = 0, hi: int | None = None) -> bytes:
    """Byte mutations at positions in [lo, hi)."""
    buf = bytearray(data)
    for kind, k, arg in ops:
        end = len(buf) if hi is None else min(hi, len(buf))
        if end <= lo:
            break
        pos = lo + k % (end - lo)
        if kind == "flip":
            buf[pos] ^= 1 << arg
        elif kind == "overwrite":
            buf[pos:pos + len(arg)] = arg
        elif kind == "insert":
            buf[pos:pos] = arg
        elif kind == "delete":
            del buf[pos:pos + arg]
        elif kind == "truncate":
            del buf[pos:]
    return bytes(buf)


# -- meta files -----------------------------------------------------------------------------------
@FUZZ
@given(base=st.sampled_from(sorted(META)), ops=st.lists(byte_op, min_size=1, max_size=3))
def test_mutated_meta_files_fail_cleanly(base, ops):
    data = META[base]
    fuzz.one_input(data[:1] + apply_ops(data[1:], ops))


hostile = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=6)
    | st.binary(max_size=6) | st.sampled_from(["float32", "int64", "bfloat16", "object", "/job:ps/task:0",
                                                "fill", "constant", "binary", "negate", "read", "add", "a"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["kind", "shape", "dtype", "value", "data", "a", "b", "x", "op", "seeds", "variable",
                         "mean", "stddev", "minval", "maxval", "var_map", "name"]) | st.text(max_size=3),
        inner, max_size=4),
    max_leaves=10)


def _paths(obj, prefix=()):
    """Every path to a value inside decoded msgpack."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


META_PATHS = {k: list(_paths(msgpack.unpackb(v[1:])))[1:] for k, v in META.items()}


@FUZZ
@given(base=st.sampled_from(sorted(META)), where=st.integers(0, 10**6), value=hostile, drop=st.booleans())
def test_meta_values_fail_cleanly(base, where, value, drop):
    """One value anywhere in a real meta file replaced (or its key removed)."""
    meta = msgpack.unpackb(META[base][1:])
    path = META_PATHS[base][where % len(META_PATHS[base])]
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    fuzz.one_input(META[base][:1] + msgpack.packb(meta, use_bin_type=True))


# -- state files ----------------------------------------------------------------------------------
@FUZZ
@given(base=st.sampled_from(sorted(STATE)), ops=st.lists(byte_op, min_size=1, max_size=3))
def test_mutated_state_files_fail_cleanly(base, ops):
    data = STATE[base]
    fuzz.one_input(data[:1] + apply_ops(data[1:], ops))


state_line = st.tuples(
    st.sampled_from(["model_checkpoint_path", "all_model_checkpoint_paths", "all_model_checkpoint_timestamps",
                     "last_preserved_timestamp", "unknown", "model_checkpoint_path "]),
    st.one_of(st.text(max_size=12).map(lambda s: '"' + s + '"'), st.text(max_size=8),
              st.floats().map(repr), st.integers().map(str),
              st.sampled_from(['"model.ckpt-1"', '"../model.ckpt-1"', '"/"', '""', '"\\"', '"a\\"b"', "1e999",
                               "-1e999", "nan", "inf", '"\x00"', '"model.ckpt-1\\n"']))).map(lambda kv: f"{kv[0]}: {kv[1]}")


@FUZZ
@given(lines=st.lists(state_line | st.text(max_size=20), max_size=8), sep=st.sampled_from(["\n", "\r\n", "\r"]))
def test_generated_state_files_fail_cleanly(lines, sep):
    fuzz.one_input(b"\x02" + sep.join(lines).encode("utf-8", "surrogatepass"))


# -- checkpoint indexes with a right checksum -----------------------------------------------------
CKPT_INDEX = {}
for _k, _v in CKPT.items():
    _, _off, _n, _ = fmt.parse_footer(_v[-fmt.FOOTER_SIZE:])
    CKPT_INDEX[_k] = (_off, _off + _n)


@FUZZ
@given(base=st.sampled_from(sorted(CKPT)), ops=st.lists(byte_op, min_size=1, max_size=3))
def test_mutated_index_bytes_with_a_right_checksum_fail_cleanly(base, ops):
    """Mutations inside the index only (the footer stays), then the checksum is recomputed:
    every one reaches the index decoder and validator."""
    data = CKPT[base]
    lo, hi = CKPT_INDEX[base]
    body = data[1:]
    index = apply_ops(body[lo:hi], ops)
    body = body[:lo] + index + fmt.pack_footer(lo, len(index), 0)
    fuzz.one_input(b"\x80" + body)


# -- what the fuzzer found (regressions) ----------------------------------------------------------
def _var(name, init, shape=(2,), dtype="float32"):
    return {"name": name, "shape": list(shape), "dtype": dtype, "device": "", "trainable": True,
            "collections": ["variables"], "initializer": init, "slot_of": None}


def _meta_file(tmp_path, variables):
    p = tmp_path / "m.meta"
    p.write_bytes(msgpack.packb({"format": "varstore.meta", "version": 1, "variables": variables}))
    return str(p)


FILL = {"kind": "fill", "shape": [2], "dtype": "float32", "value": 1.0}


def _negated(levels):
    desc = FILL
    for _ in range(levels):
        desc = {"kind": "negate", "x": desc}
    return desc


@pytest.mark.parametrize("init, match", [
    ({"kind": "binary", "op": "add", "a": 5, "b": None}, "AttributeError"),  # was AttributeError
    ({"kind": "random_normal", "shape": [2], "dtype": "float32", "mean": 0.0, "stddev": 1.0,
      "seeds": [float("inf")]}, "OverflowError"),  # was OverflowError
    (_negated(400), "deeper than 100"),
])
def test_hostile_initializers_are_data_loss(tmp_path, init, match):
    tf.reset_default_graph()
    with pytest.raises(DataLossError, match=match):
        import_meta_graph(_meta_file(tmp_path, [_var("a", init)]))


def test_legit_nested_initializer_still_imports(tmp_path):
    tf.reset_default_graph()
    import_meta_graph(_meta_file(tmp_path, [_var("a", _negated(50))]))
    assert [v.op.name for v in tf.global_variables()] == ["a"]


def test_a_long_chain_of_initializers_is_data_loss_not_recursion_error(tmp_path):
    """Each variable's initializer reads the next one, 3000 deep (was RecursionError)."""
    n = 3000
    variables = [_var(f"v{i}", {"kind": "read", "variable": f"v{i + 1}"} if i < n - 1 else FILL) for i in range(n)]
    tf.reset_default_graph()
    with pytest.raises(DataLossError, match="too deeply"):
        import_meta_graph(_meta_file(tmp_path, variables))


def test_reading_a_small_meta_or_state_file_allocates_little(tmp_path):
    """f.read(limit + 1) allocated the whole limit: 256 MiB per meta file, 16 MiB per state file."""
    tf.reset_default_graph()
    tf.Variable(tf.zeros([2]), name="v")
    meta = str(tmp_path / "m.meta")
    tf.train.export_meta_graph(meta)
    cs.update_checkpoint_state(str(tmp_path), cs.CheckpointState(model_checkpoint_path=str(tmp_path / "x")))
    read_meta_graph(meta), cs.get_checkpoint_state(str(tmp_path))  # warm
    was = tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        for read in (lambda: read_meta_graph(meta), lambda: cs.get_checkpoint_state(str(tmp_path))):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            read()
            assert tracemalloc.get_traced_memory()[1] - base < 256 << 10
    finally:
        if not was:
            tracemalloc.stop()


def _finishes(fn, seconds=10):
    """Run fn in a thread; the result (or exception) if it finishes in time, else fail."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the reader blocked"
    return out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_device_is_refused_at_once(tmp_path):
    """A FIFO named like a meta or state file blocked the reader forever; a device was read."""
    os.mkfifo(tmp_path / "m.meta")
    os.mkfifo(tmp_path / "checkpoint")
    out = _finishes(lambda: read_meta_graph(str(tmp_path / "m.meta")))
    assert isinstance(out.get("error"), NotFoundError) and "regular file" in str(out["error"])
    out = _finishes(lambda: cs.get_checkpoint_state(str(tmp_path)))
    assert isinstance(out.get("error"), DataLossError)
    if os.path.exists("/dev/zero"):
        t0 = time.monotonic()
        with pytest.raises(NotFoundError):
            read_meta_graph("/dev/zero")
        assert time.monotonic() - t0 < 1


def test_state_files_naming_odd_paths(tmp_path):
    """Absolute paths, devices, directories, NULs: latest_checkpoint says None or names a file,
    and restoring from what it names is an OpError, never a hang or a raw exception."""
    (tmp_path / "sub").mkdir()
    for target in ["/dev/zero", "/", str(tmp_path / "sub"), "nul\\u0000byte", "../../etc", "x" * 5000,
                   "/proc/self/mem"]:
        (tmp_path / "checkpoint").write_text(f'model_checkpoint_path: "{target}"\n')
        latest = cs.latest_checkpoint(str(tmp_path))
        if latest is not None:
            with pytest.raises(OpError):
                tf.train.Saver(var_list={}, allow_empty=True).restore(None, latest)


def test_fuzz_script_replays_its_seed_corpus(tmp_path):
    """The long-running fuzzer's entry points work: a seed corpus is written and replays clean."""
    assert fuzz.write_seed_corpus(str(tmp_path / "corpus")) == len(SEEDS)
    assert fuzz.replay(sorted(str(p) for p in (tmp_path / "corpus").iterdir())) == 0
    stats = fuzz.run_random([str(tmp_path / "corpus")], 1.0, seed=0, artifacts=str(tmp_path / "art"))
    assert stats["executions"] > 50 and stats["unique"] == {}


# -- TensorFlow bundles (issue 16) ----------------------------------------------------------------
TFB = {k: v for k, v in SEEDS.items() if k.startswith("tf-")}


@FUZZ
@given(base=st.sampled_from(sorted(TFB)), ops=st.lists(byte_op, min_size=1, max_size=3))
def test_mutated_tf_bundles_fail_cleanly(base, ops):
    """Byte mutations of a bundle's index (block CRCs as they are, or recomputed so that the
    mutation reaches the table and entry decoders) or of its data file."""
    data = TFB[base]
    fuzz.one_input(data[:1] + apply_ops(data[1:], ops))


_i64 = st.integers(-(2**63), 2**63 - 1) | st.integers(-2, 4096)
extent = st.tuples(st.integers(-2, 70) | _i64, st.integers(-2, 70) | _i64)


@FUZZ
@given(num_shards=st.integers(-1, 3) | st.integers(-(2**31), 2**31 - 1), dtype=st.integers(-1, 40),
       shape=st.lists(st.integers(-2, 8) | st.integers(0, 2**62), max_size=4), shard=st.integers(-1, 3),
       offset=_i64, size=_i64, crc=st.integers(0, 2**32 - 1), unknown_rank=st.booleans(),
       slices=st.lists(st.lists(extent, max_size=3), max_size=3), slice_size=_i64)
def test_hostile_tf_entries_fail_cleanly(num_shards, dtype, shape, shard, offset, size, crc, unknown_rank, slices,
                                         slice_size):
    """An index with one hostile entry (and entries for its slices), valid tables and CRCs: only
    varstore.errors escape, and nothing is allocated beyond what the files justify."""
    from varstore.checkpoint.tf import slices as sl
    from varstore.checkpoint.tf import sstable, wire
    items = [(b"", wire.encode_header(wire.Header(num_shards=num_shards, producer=1))),
             (b"w", wire.encode_entry(wire.Entry(dtype=dtype, shape=tuple(shape), unknown_rank=unknown_rank,
                                                 shard_id=shard, offset=offset, size=size, crc32c=crc,
                                                 slices=[tuple(s) for s in slices])))]
    for s in slices:
        shp = tuple(max(0, n) for _, n in s)
        items.append((sl.slice_key("w", tuple(s)), wire.encode_entry(wire.Entry(
            dtype=dtype, shape=shp, offset=offset, size=slice_size, crc32c=crc))))
    items = [items[0]] + sorted(dict(items[1:]).items())
    fuzz.one_input(bytes([0x60]) + sstable.build_table(items))
