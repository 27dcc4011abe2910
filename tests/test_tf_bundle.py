"""TF V2 bundles read and written without TensorFlow, against fixtures TensorFlow wrote.

The fixtures under tests/fixtures/tf/ were written by tensorflow-cpu (``oracle.py write``:
compat.v1 Saver, partitioned and sharded saves, tf.train.Checkpoint); ``values.py``
recomputes what they hold, so every check here is bit-exact against what TF saved.
tests/test_tf_bundle_tf.py regenerates them with TF when it is installed and checks
the other direction (TF reading what varstore writes).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.errors import DataLossError, InvalidArgumentError, NotFoundError
from varstore.checkpoint.tf import (
    TFBundleReader,
    is_bundle,
    object_names,
    plain_name,
    slices,
    sstable,
    wire,
    write_bundle,
)
from varstore.checkpoint.tf import crc32c as crc
from varstore.checkpoint.tf.writer import index_bytes

FIX = Path(__file__).resolve().parent / "fixtures" / "tf"
_spec = importlib.util.spec_from_file_location("tf_fixture_values", FIX / "values.py")
values = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(values)

DTYPES = FIX / "v1_dtypes" / "model.ckpt-7"
PARTITIONED = FIX / "v1_partitioned" / "model.ckpt-1"
SHARDED = FIX / "v1_sharded" / "model.ckpt-2"
OBJECT = FIX / "tf2_object" / "ckpt-1"


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact: dtype, shape and bytes (NaN payloads included); strings element by element."""
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# -- reading what TF wrote ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(values.dtype_vars()))
def test_every_dtype_tf_wrote_reads_bit_exactly(name):
    want = values.dtype_vars()[name]
    with TFBundleReader(DTYPES) as r:
        assert r.dtype(name) == want.dtype and r.shape(name) == want.shape
        assert same(r.get_tensor(name), want)
        assert same(r.read_tensor(name), want)
        out = np.full(want.shape, 0, want.dtype)
        assert r.read_into(name, out) is out and same(out, want)


def test_strings_read_as_bytes_arrays():
    with TFBundleReader(DTYPES) as r:
        for name, want in values.STRINGS.items():
            assert r.dtype(name) == np.dtype(object) and r.tf_dtype(name) == "DT_STRING"
            assert same(r.get_tensor(name), want)
            with pytest.raises(InvalidArgumentError, match=name):
                r.read_into(name, np.empty(want.shape, object))


def test_listing_matches_what_tf_saved():
    with TFBundleReader(DTYPES) as r:
        want = {**values.dtype_vars(), **values.STRINGS}
        assert r.names() == sorted(want)
        assert r.get_variable_to_shape_map() == {n: list(a.shape) for n, a in want.items()}
        assert all(e is None for _, e in r.verify())
        assert r.extra == {"format": "tf", "num_shards": 1, "producer": 1}


def test_sharded_bundle_reads_from_both_data_files():
    with TFBundleReader(SHARDED) as r:
        assert len(r.files) == 3
        assert {r.file_of(n) for n in r.names()} == set(r.files[1:])
        for name, (_, want) in values.sharded_vars().items():
            assert same(r.get_tensor(name), want)


def test_partitioned_variables_come_back_whole():
    with TFBundleReader(PARTITIONED) as r:
        full = values.partitioned_vars()
        assert r.names() == sorted(full)  # the slice keys are not listed
        for name, want in full.items():
            assert r.shape(name) == want.shape
            assert same(r.get_tensor(name), want)
            out = np.empty(want.shape, want.dtype)
            assert same(r.read_into(name, out), want)  # column slices go through a temporary
        assert r.is_partitioned("part/cols") and not r.is_partitioned("plain")


def test_read_slice_restores_into_other_partitions():
    """A tensor saved in 3 row partitions, read as 2 others (and a block crossing them)."""
    want = values.partitioned_vars()["part/rows"]
    with TFBundleReader(PARTITIONED) as r:
        assert same(r.read_slice("part/rows", [0, 0], [5, 4]), want[:5])
        assert same(r.read_slice("part/rows", [5, 0], [5, 4]), want[5:])
        assert same(r.read_slice("part/cols", [2, 3], [3, 4]), values.partitioned_vars()["part/cols"][2:5, 3:7])
        with pytest.raises(InvalidArgumentError):
            r.read_slice("part/rows", [8, 0], [5, 4])


def test_tf2_object_keys_and_their_plain_names():
    with TFBundleReader(OBJECT) as r:
        v = values.object_vars()
        assert same(r.get_tensor("model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"), v["dense/kernel"])
        assert r.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE").item() == 3
    assert object_names(OBJECT) == {
        "model/dense/bias/.ATTRIBUTES/VARIABLE_VALUE": "model/dense/bias",
        "model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE": "model/dense/kernel",
        "model/head/w/.ATTRIBUTES/VARIABLE_VALUE": "model/head/w",
        "save_counter/.ATTRIBUTES/VARIABLE_VALUE": "save_counter",
        "step/.ATTRIBUTES/VARIABLE_VALUE": "step"}
    full = object_names(OBJECT, by="full_name")
    assert full["model/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"] == "dense/kernel"
    assert full["model/head/w/.ATTRIBUTES/VARIABLE_VALUE"] == "head/w"
    assert plain_name("a.Sb/c..d/.ATTRIBUTES/VARIABLE_VALUE") == "a/b/c.d"


def test_get_tensor_maps_aligned_tensors_and_checks_crc_once():
    with TFBundleReader(SHARDED) as r:
        a = r.get_tensor("dev0/a")
        assert not a.flags.writeable and not a.flags.owndata


def test_one_tensor_read_reads_only_its_bytes(tmp_path, monkeypatch):
    big = np.arange(1 << 18, dtype=np.float32)
    write_bundle(tmp_path / "m", [("big", big), ("small", np.ones(3, np.int8))], fsync=False)
    from varstore.checkpoint.store.local import LocalSource
    reads = []
    orig = LocalSource.preadv

    def counting(self, views, offset):
        reads.append(sum(v.nbytes for v in views))
        return orig(self, views, offset)

    monkeypatch.setattr(LocalSource, "preadv", counting)
    with TFBundleReader(tmp_path / "m") as r:
        assert r.read_tensor("small").tolist() == [1, 1, 1]
    assert sum(reads) == 3


def test_prefix_index_and_data_file_all_name_the_bundle():
    assert is_bundle(DTYPES) and is_bundle(f"{DTYPES}.index")
    assert not is_bundle(FIX / "v1_dtypes") and not is_bundle(FIX / "nope")
    with TFBundleReader(f"{DTYPES}.data-00000-of-00001") as r:
        assert r.path == str(DTYPES)


def test_missing_bundle_is_not_found_and_missing_key_names_close_ones(tmp_path):
    with pytest.raises(NotFoundError):
        TFBundleReader(tmp_path / "nothing")
    with TFBundleReader(DTYPES) as r, pytest.raises(NotFoundError, match="dtypes/float32"):
        r.get_tensor("dtypes/float3")


# -- writing --------------------------------------------------------------------------------------------
def test_write_then_read_every_dtype_and_strings(tmp_path):
    tensors = {**values.dtype_vars(), **values.STRINGS}
    n = write_bundle(tmp_path / "m", list(tensors.items()), fsync=False)
    assert n == sum(f.stat().st_size for f in tmp_path.iterdir())
    with TFBundleReader(tmp_path / "m") as r:
        for name, want in tensors.items():
            assert same(r.get_tensor(name), want), name
        assert all(e is None for _, e in r.verify())


def test_written_index_is_byte_identical_to_tfs_for_the_same_entries():
    """Our table builder (blocks, restarts, separators, footer) is TF's: rebuild TF's own index."""
    raw = (FIX / "v1_partitioned" / "model.ckpt-1.index").read_bytes()
    assert sstable.build_table(sstable.read_table(raw)) == raw
    raw = DTYPES.with_name("model.ckpt-7.index").read_bytes()
    items = sstable.read_table(raw)
    entries = {k.decode(): wire.decode_entry(v) for k, v in items[1:]}
    assert index_bytes(entries) == raw


def test_many_entries_span_several_blocks(tmp_path):
    tensors = [(f"layer_{i:05d}/w", np.full(2, i, np.int32)) for i in range(12000)]
    write_bundle(tmp_path / "m", tensors, fsync=False)
    raw = (tmp_path / "m.index").read_bytes()
    assert len(raw) > sstable.BLOCK_SIZE  # two data blocks at least
    with TFBundleReader(tmp_path / "m") as r:
        assert len(r) == 12000 and r.get_tensor("layer_11999/w").tolist() == [11999, 11999]


def test_write_is_atomic_on_failure(tmp_path):
    write_bundle(tmp_path / "m", [("a", np.ones(2))], fsync=False)
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}

    def bad():
        yield "b", np.zeros(4)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_bundle(tmp_path / "m", bad(), fsync=False)
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before
    with pytest.raises(InvalidArgumentError, match="two tensors"):
        write_bundle(tmp_path / "m", [("a", np.ones(1)), ("a", np.ones(1))], fsync=False)
    with pytest.raises(InvalidArgumentError, match="dtype"):
        write_bundle(tmp_path / "m", [("a", np.ones(1, "datetime64[s]"))], fsync=False)
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before


def test_big_endian_and_non_contiguous_arrays_are_written_as_tf_wants(tmp_path):
    a = np.arange(12, dtype=">i4").reshape(3, 4).T
    write_bundle(tmp_path / "m", [("a", a)], fsync=False)
    got = TFBundleReader(tmp_path / "m").get_tensor("a")
    assert got.dtype == np.int32 and got.tolist() == a.tolist()


# -- the parts --------------------------------------------------------------------------------------------
def test_crc32c_fast_path_matches_the_fallback():
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8)
    assert crc.crc32c(data) == crc.crc32c_fallback(data)
    assert crc.crc32c(data[:77], crc.crc32c(b"xyz")) == crc.crc32c_fallback(data[:77], crc.crc32c_fallback(b"xyz"))


@given(st.binary(max_size=300), st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_crc32c_implementations_agree(data, start):
    assert crc.crc32c(data, start) == crc.crc32c_fallback(data, start)
    assert crc.unmask(crc.mask(start)) == start


@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=60)), max_size=80, unique_by=lambda kv: kv[0]),
       st.integers(16, 4096), st.integers(1, 20))
@settings(max_examples=150, deadline=None)
def test_table_round_trip(items, block_size, interval):
    items = sorted(items)
    assert sstable.read_table(sstable.build_table(items, block_size, interval)) == items


@given(st.integers(-(2**63), 2**63 - 1))
def test_signed_ordered_code_sorts_like_the_numbers(v):
    enc = slices._signed_increasing(v)
    assert (slices._signed_increasing(v + 1) > enc) if v < 2**63 - 1 else True
    assert (slices._signed_increasing(v - 1) < enc) if v > -(2**63) else True


def test_slice_key_encodings_match_tf():
    # The keys TF wrote for the fixture's partitions (2-byte encodings for starts >= 64 included).
    keys = [k for k, _ in sstable.read_table((FIX / "v1_partitioned" / "model.ckpt-1.index").read_bytes())
            if k.startswith(b"\x00")]
    mine = {slices.slice_key("part/big", ((s, n), (0, 3))) for s, n in ((0, 67), (67, 67), (134, 66))}
    assert mine <= set(keys)
    assert slices.slice_key("w", ((0, -1),)) == b"\x00w\x00\x01\x01\x01\x80\x7f"


def test_slices_must_tile_the_tensor():
    assert slices.tiles([((0, 2),), ((2, 4),)], (4,)) is None
    assert "overlap" in slices.tiles([((0, 3),), ((1, 2),)], (4,)).replace("elements", "overlap")
    assert slices.tiles([((0, 2), (0, 2)), ((1, 3), (1, 3)), ((0, 1), (2, 3))], (3, 3)) is not None


# -- hostile files ------------------------------------------------------------------------------------------
def _copy(tmp_path, src=DTYPES) -> Path:
    for f in src.parent.iterdir():
        if f.name.startswith(src.name):
            shutil.copy(f, tmp_path / f.name)
    return tmp_path / src.name


def test_corrupt_tensor_bytes_fail_their_crc_naming_file_and_key(tmp_path):
    p = _copy(tmp_path)
    data = Path(f"{p}.data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    with TFBundleReader(p) as r:
        off = r._index.tensors["dtypes/int32"].pieces[0].offset
    raw[off + 3] ^= 0x40
    data.write_bytes(bytes(raw))
    with TFBundleReader(p) as r:
        for read in (r.get_tensor, r.read_tensor):
            with pytest.raises(DataLossError, match=r"data-00000-of-00001: tensor 'dtypes/int32': CRC32C"):
                read("dtypes/int32")
        bad = [n for n, e in r.verify() if e]
        assert bad == ["dtypes/int32"]
        assert same(r.get_tensor("dtypes/int16"), values.dtype_vars()["dtypes/int16"])


def test_truncated_data_file_is_data_loss_at_open(tmp_path):
    p = _copy(tmp_path)
    data = Path(f"{p}.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:-5])
    with pytest.raises(DataLossError, match=r"model.ckpt-7.index: tensor 'strings/vector'.*run past the end"):
        TFBundleReader(p)


def test_missing_data_file_is_data_loss(tmp_path):
    p = _copy(tmp_path, SHARDED)
    os.unlink(f"{p}.data-00001-of-00002")
    with pytest.raises(DataLossError, match="data-00001-of-00002.*missing"):
        TFBundleReader(p)


def _rewrite(tmp_path, change) -> Path:
    """A copy of the dtypes fixture whose index entries went through ``change(key, Entry)``."""
    p = _copy(tmp_path)
    items = sstable.read_table(Path(f"{p}.index").read_bytes())
    header = wire.decode_header(items[0][1])
    entries = {k.decode(): wire.decode_entry(v) for k, v in items[1:]}
    header = change(entries, header) or header
    out = [(b"", wire.encode_header(header))] + sorted((k.encode(), wire.encode_entry(e)) for k, e in entries.items())
    Path(f"{p}.index").write_bytes(sstable.build_table(out))
    return p


@pytest.mark.parametrize("change, message", [
    (lambda es, h: setattr(es["dtypes/int32"], "size", 64), "dtypes/int32'.*64 bytes stored"),
    (lambda es, h: setattr(es["dtypes/int32"], "shape", (2**40, 2**40)), "dtypes/int32'.*bytes stored"),
    (lambda es, h: setattr(es["dtypes/int32"], "shape", (3, -5)), "negative"),
    (lambda es, h: setattr(es["dtypes/int32"], "dtype", 99), "unknown dtype DataType\\(99\\)"),
    (lambda es, h: setattr(es["dtypes/int32"], "shard_id", 3), "shard_id 3"),
    (lambda es, h: setattr(es["dtypes/int32"], "offset", 2**62), "run past the end"),
    (lambda es, h: setattr(es["dtypes/int32"], "offset", -8), "negative offset"),
    (lambda es, h: setattr(es["dtypes/int32"], "shape", (1,) * 300), "dimensions"),
    (lambda es, h: setattr(es["dtypes/int32"], "unknown_rank", True), "unknown rank"),
    (lambda es, h: setattr(es["strings/vector"], "size", 3), "cannot hold 4 strings"),
    (lambda es, h: setattr(es["dtypes/int32"], "slices", [((0, 3), (0, 5))]), "no entry holds it"),
    (lambda es, h: es.update(copy=es["dtypes/complex128"]), "entries overlap"),  # claims > the data file
    (lambda es, h: wire.Header(num_shards=1, endianness=1, producer=1), "big-endian"),
    (lambda es, h: wire.Header(num_shards=1, producer=1, min_consumer=2), "version"),
    (lambda es, h: wire.Header(num_shards=1, producer=1, bad_consumers=[1]), "version"),
    (lambda es, h: wire.Header(num_shards=0, producer=1), "num_shards 0"),
    (lambda es, h: wire.Header(num_shards=10**6, producer=1), "num_shards"),
])
def test_hostile_entries_are_data_loss_naming_index_and_key(tmp_path, change, message):
    p = _rewrite(tmp_path, change)
    with pytest.raises(DataLossError, match=message) as e:
        TFBundleReader(p)
    assert f"{p}.index" in str(e.value)


def test_partition_faults(tmp_path):
    def overlap(es, h):
        e = wire.Entry(dtype=1, shape=(4,), slices=[((0, 3),), ((2, 2),)])
        es["w"] = e
        for ext in e.slices:
            es[slices.slice_key("w", ext).decode("latin-1")] = wire.Entry(dtype=1, shape=(ext[0][1],), size=4 * ext[0][1])
    p = _copy(tmp_path, PARTITIONED)
    items = sstable.read_table(Path(f"{p}.index").read_bytes())
    entries = {k: wire.decode_entry(v) for k, v in items[1:]}
    full = entries[b"part/rows"]
    full.slices = full.slices[:2]  # a slice missing: the rest do not cover the tensor
    out = [items[0]] + sorted((k, wire.encode_entry(e)) for k, e in entries.items())
    Path(f"{p}.index").write_bytes(sstable.build_table(out))
    with pytest.raises(DataLossError, match="part/rows'.*slices hold 28 elements, the tensor has 40"):
        TFBundleReader(p)
    full.slices = full.slices[:1] * 2 + [((7, 3), (0, 4))]
    out = [items[0]] + sorted((k, wire.encode_entry(e)) for k, e in entries.items())
    Path(f"{p}.index").write_bytes(sstable.build_table(out))
    with pytest.raises(DataLossError, match="listed twice"):
        TFBundleReader(p)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-1], "magic"),
    (lambda b: b[:30], "footer|magic"),
    (lambda b: b"", "footer"),
    (lambda b: bytes(b[:10]) + bytes([b[10] ^ 1]) + bytes(b[11:]), "CRC32C"),
    (lambda b: bytes(b[:-48]) + b"\xff" * 40 + bytes(b[-8:]), "footer|runs past"),
])
def test_corrupt_table_is_data_loss(tmp_path, mutate, message):
    p = _copy(tmp_path)
    idx = Path(f"{p}.index")
    idx.write_bytes(mutate(idx.read_bytes()))
    with pytest.raises(DataLossError, match=message) as e:
        TFBundleReader(p)
    assert str(idx) in str(e.value)


def test_compressed_blocks_are_refused_by_name(tmp_path):
    items = [(b"", wire.encode_header(wire.Header(num_shards=1, producer=1)))]
    table = bytearray(sstable.build_table(items))
    # The data block's trailer: type byte set to snappy (1), CRC recomputed so only the type is wrong.
    block = sstable._BlockBuilder(16)
    block.add(*items[0])
    size = len(block.finish())  # the data block is the first thing in the file
    table[size] = 1
    struct.pack_into("<I", table, size + 1, crc.mask(crc.crc32c(bytes(table[:size + 1]))))
    with pytest.raises(sstable.TableError, match="compressed"):
        sstable.read_table(bytes(table))


def _outcome(fn, buf):
    try:
        return fn(buf)
    except wire.WireError:
        return "WireError"


@given(st.binary(max_size=40))
@settings(max_examples=400, deadline=None)
def test_entry_fast_path_agrees_with_the_general_decoder_on_any_bytes(buf):
    assert _outcome(wire.decode_entry, buf) == _outcome(wire.decode_entry_general, buf)


@given(dtype=st.integers(0, 30), shape=st.lists(st.integers(0, 2**40), max_size=5), shard=st.integers(0, 3),
       offset=st.integers(0, 2**62), size=st.integers(0, 2**62), crc=st.integers(0, 2**32 - 1),
       cut=st.integers(0, 60), flip=st.integers(0, 60))
@settings(max_examples=300, deadline=None)
def test_entry_fast_path_agrees_on_tf_shaped_entries(dtype, shape, shard, offset, size, crc, cut, flip):
    raw = wire.encode_entry(wire.Entry(dtype=dtype, shape=tuple(shape), shard_id=shard, offset=offset, size=size,
                                       crc32c=crc))
    assert wire.decode_entry(raw) == wire.decode_entry_general(raw)
    for mutated in (raw[:cut], raw[:flip % max(len(raw), 1)] + bytes([raw[flip % len(raw)] ^ 0x80])
                    + raw[flip % len(raw) + 1:]):
        assert _outcome(wire.decode_entry, mutated) == _outcome(wire.decode_entry_general, mutated)
